//! SparseLoCo codec.
