//! The event dispatcher: one task per node that takes every Lightning event in order, advances
//! the hold-invoice records and the in-memory trackers, persists, and only then acknowledges the
//! event to the Lightning node. Subscribers get [`LightningEvent`]s; waiters are woken through a
//! version counter, so nobody polls and no event can slip between a check and a wait.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bitcoin::secp256k1::PublicKey;
use bitcoin::OutPoint;
use l402_protocol::hold::{FailReason, HoldError, HoldRecord, PaymentHash, Preimage, Transition};
use ldk_node::Event;
use tokio::sync::watch;

use super::config::{EVENT_RETRY_BACKOFF, RECONCILE_INTERVAL};
use super::{Inner, LightningError, LocalChannelId};

/// A payment or channel event, in the adapter's own terms.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LightningEvent {
    /// HTLCs for a hold invoice are locked in and can be claimed before `claim_deadline`.
    HoldClaimable {
        /// The invoice's hash.
        payment_hash: PaymentHash,
        /// Amount held.
        amount_msat: u64,
        /// Height from which the HTLCs are failed back automatically.
        claim_deadline: Option<u32>,
    },
    /// A hold invoice was claimed: the money arrived.
    HoldClaimed {
        /// The invoice's hash.
        payment_hash: PaymentHash,
        /// Amount received.
        amount_msat: u64,
    },
    /// A hold invoice ended failed; its HTLCs went back to the payer.
    HoldFailed {
        /// The invoice's hash.
        payment_hash: PaymentHash,
        /// Why.
        reason: FailReason,
    },
    /// A payment to an ordinary (auto-claimed) invoice arrived.
    Received {
        /// The payment hash.
        payment_hash: PaymentHash,
        /// Amount received.
        amount_msat: u64,
    },
    /// An outgoing payment succeeded.
    PaymentSucceeded {
        /// The payment hash.
        payment_hash: PaymentHash,
        /// Routing fees paid.
        fee_paid_msat: Option<u64>,
    },
    /// An outgoing payment failed; the amount is back in our channels.
    PaymentFailed {
        /// The payment hash.
        payment_hash: PaymentHash,
        /// The Lightning node's reason.
        reason: String,
    },
    /// We forwarded a payment (routing hub).
    Forwarded {
        /// Fee earned.
        fee_earned_msat: Option<u64>,
        /// Amount forwarded.
        amount_msat: Option<u64>,
    },
    /// A channel's funding transaction was negotiated and broadcast.
    ChannelPending {
        /// The channel.
        channel: LocalChannelId,
        /// The peer.
        counterparty: PublicKey,
        /// The funding output.
        funding: OutPoint,
    },
    /// A channel can carry payments.
    ChannelReady {
        /// The channel.
        channel: LocalChannelId,
        /// The peer.
        counterparty: Option<PublicKey>,
    },
    /// A channel closed.
    ChannelClosed {
        /// The channel.
        channel: LocalChannelId,
        /// The Lightning node's reason.
        reason: String,
    },
    /// This subscriber fell behind and missed `missed` events; re-read state to catch up.
    Lagged {
        /// Number of missed events.
        missed: u64,
    },
}

/// How an outgoing payment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PaymentOutcome {
    /// Paid; the preimage is the proof.
    Succeeded {
        /// Routing fees paid.
        fee_paid_msat: Option<u64>,
        /// The preimage revealed by the payee.
        preimage: Option<Preimage>,
    },
    /// Failed; nothing left our channels.
    Failed {
        /// The Lightning node's reason.
        reason: String,
    },
}

/// What the adapter knows about a channel from events.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelState {
    /// Funding broadcast, waiting for confirmations.
    Pending {
        /// The peer.
        counterparty: PublicKey,
        /// The funding output.
        funding: OutPoint,
    },
    /// Usable.
    Ready,
    /// Closed.
    Closed {
        /// The Lightning node's reason.
        reason: String,
    },
}

/// In-memory results the waiters look at (the hold records live in the store).
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    pub outbound: BTreeMap<PaymentHash, PaymentOutcome>,
    /// Payments sent since this node started (their outcome comes from events).
    pub sent: BTreeSet<PaymentHash>,
    pub received: BTreeMap<PaymentHash, u64>,
    pub channels: BTreeMap<LocalChannelId, ChannelState>,
    pub forwarded: u64,
}

impl Inner {
    /// Advances state for one Lightning event. Returns the events to publish. An `Err` means the
    /// event must not be acknowledged (it will be handled again).
    pub(crate) fn handle_event(
        &self,
        event: &Event,
    ) -> Result<Vec<LightningEvent>, LightningError> {
        let mut out = Vec::new();
        match event {
            Event::PaymentClaimable {
                payment_hash,
                claimable_amount_msat,
                claim_deadline,
                ..
            } => {
                let hash = PaymentHash(payment_hash.0);
                let span = tracing::info_span!("payment", payment_hash = %hash, node = %self.label);
                let _g = span.enter();
                let mut holds = self.holds();
                let Some(mut record) = holds.get(&hash).cloned() else {
                    tracing::warn!(
                        "claimable payment for an unknown hold invoice: failing it back"
                    );
                    self.fail_back(hash);
                    return Ok(out);
                };
                match record.on_claimable(*claimable_amount_msat, *claim_deadline) {
                    Ok(Transition::Changed) => {
                        holds.put(record)?;
                        tracing::debug!(
                            amount_msat = claimable_amount_msat,
                            claim_deadline,
                            "hold invoice claimable"
                        );
                        out.push(LightningEvent::HoldClaimable {
                            payment_hash: hash,
                            amount_msat: *claimable_amount_msat,
                            claim_deadline: *claim_deadline,
                        });
                    }
                    Ok(Transition::Unchanged) => {}
                    Err(HoldError::Underpaid { got, want }) => {
                        tracing::warn!(got, want, "underpaid hold invoice: failing it back");
                        let reason = FailReason::Underpaid { amount_msat: got };
                        if record.fail(reason).is_ok() {
                            holds.put(record)?;
                        }
                        self.fail_back(hash);
                        out.push(LightningEvent::HoldFailed {
                            payment_hash: hash,
                            reason,
                        });
                    }
                    Err(e) => {
                        // Terminal: a failed invoice never becomes claimable again.
                        tracing::warn!(error = %e, "HTLC for a finished hold invoice: failing it back");
                        if matches!(record.state, l402_protocol::hold::HoldState::Failed(_)) {
                            self.fail_back(hash);
                        }
                    }
                }
            }
            Event::PaymentReceived {
                payment_hash,
                amount_msat,
                ..
            } => {
                let hash = PaymentHash(payment_hash.0);
                let mut holds = self.holds();
                if let Some(mut record) = holds.get(&hash).cloned() {
                    if record.on_received(*amount_msat) == Transition::Changed {
                        holds.put(record)?;
                        tracing::debug!(payment_hash = %hash, node = %self.label, amount_msat, "hold invoice claimed");
                        out.push(LightningEvent::HoldClaimed {
                            payment_hash: hash,
                            amount_msat: *amount_msat,
                        });
                    }
                } else {
                    drop(holds);
                    self.tracker().received.insert(hash, *amount_msat);
                    out.push(LightningEvent::Received {
                        payment_hash: hash,
                        amount_msat: *amount_msat,
                    });
                }
            }
            Event::PaymentSuccessful {
                payment_hash,
                payment_preimage,
                fee_paid_msat,
                ..
            } => {
                let hash = PaymentHash(payment_hash.0);
                let outcome = PaymentOutcome::Succeeded {
                    fee_paid_msat: *fee_paid_msat,
                    preimage: payment_preimage.map(|p| Preimage(p.0)),
                };
                self.tracker().outbound.insert(hash, outcome);
                out.push(LightningEvent::PaymentSucceeded {
                    payment_hash: hash,
                    fee_paid_msat: *fee_paid_msat,
                });
            }
            Event::PaymentFailed {
                payment_hash: Some(payment_hash),
                reason,
                ..
            } => {
                let hash = PaymentHash(payment_hash.0);
                let reason = reason
                    .map(|r| format!("{r:?}"))
                    .unwrap_or_else(|| "unknown".into());
                self.tracker().outbound.insert(
                    hash,
                    PaymentOutcome::Failed {
                        reason: reason.clone(),
                    },
                );
                out.push(LightningEvent::PaymentFailed {
                    payment_hash: hash,
                    reason,
                });
            }
            Event::PaymentForwarded {
                total_fee_earned_msat,
                outbound_amount_forwarded_msat,
                ..
            } => {
                self.tracker().forwarded += 1;
                out.push(LightningEvent::Forwarded {
                    fee_earned_msat: *total_fee_earned_msat,
                    amount_msat: *outbound_amount_forwarded_msat,
                });
            }
            Event::ChannelPending {
                user_channel_id,
                counterparty_node_id,
                funding_txo,
                ..
            } => {
                let channel = LocalChannelId(user_channel_id.0);
                self.tracker().channels.insert(
                    channel,
                    ChannelState::Pending {
                        counterparty: *counterparty_node_id,
                        funding: *funding_txo,
                    },
                );
                out.push(LightningEvent::ChannelPending {
                    channel,
                    counterparty: *counterparty_node_id,
                    funding: *funding_txo,
                });
            }
            Event::ChannelReady {
                user_channel_id,
                counterparty_node_id,
                ..
            } => {
                let channel = LocalChannelId(user_channel_id.0);
                self.tracker().channels.insert(channel, ChannelState::Ready);
                out.push(LightningEvent::ChannelReady {
                    channel,
                    counterparty: *counterparty_node_id,
                });
            }
            Event::ChannelClosed {
                user_channel_id,
                reason,
                ..
            } => {
                let channel = LocalChannelId(user_channel_id.0);
                let reason = reason
                    .as_ref()
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "unknown".into());
                self.tracker().channels.insert(
                    channel,
                    ChannelState::Closed {
                        reason: reason.clone(),
                    },
                );
                out.push(LightningEvent::ChannelClosed { channel, reason });
            }
            _ => {}
        }
        Ok(out)
    }

    /// Records expiries: every claimable record whose `claim_deadline` the chain has reached
    /// becomes `Failed(Expired)` (the Lightning node fails those HTLCs back by itself when it
    /// connects that block; failing again is a harmless no-op that also updates its store).
    pub(crate) fn reconcile_expiries(&self) -> Result<Vec<LightningEvent>, LightningError> {
        let height = self.height();
        let mut holds = self.holds();
        let due: Vec<HoldRecord> = holds
            .all()
            .filter(|r| matches!(r.state, l402_protocol::hold::HoldState::Claimable { claim_deadline: Some(d), .. } if height >= d))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for mut record in due {
            if record.expire(height) == Transition::Changed {
                let hash = record.payment_hash;
                holds.put(record)?;
                tracing::info!(payment_hash = %hash, node = %self.label, height, "hold invoice expired and was failed back");
                self.fail_back(hash);
                out.push(LightningEvent::HoldFailed {
                    payment_hash: hash,
                    reason: FailReason::Expired { height },
                });
            }
        }
        Ok(out)
    }

    /// Publishes events and wakes waiters.
    pub(crate) fn publish(&self, events: Vec<LightningEvent>) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
        for e in events {
            // No subscriber is fine.
            let _ = self.events.send(e);
        }
    }
}

/// The dispatcher loop: runs until `stop` flips or its sender is dropped.
pub(crate) async fn dispatch(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(RECONCILE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = tick.tick() => {
                match inner.reconcile_expiries() {
                    Ok(events) => if !events.is_empty() { inner.publish(events) },
                    Err(e) => tracing::error!(node = %inner.label, error = %e, "reconciling hold invoices failed"),
                }
                continue;
            }
            event = inner.node.next_event_async() => event,
        };
        let published = loop {
            match inner.handle_event(&event) {
                Ok(p) => break p,
                Err(e) => {
                    tracing::error!(node = %inner.label, error = %e, ?event, "handling event failed; will retry before acknowledging");
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = tokio::time::sleep(EVENT_RETRY_BACKOFF) => {}
                    }
                }
            }
        };
        // Persisted above; only now may the Lightning node forget the event.
        if let Err(e) = inner.node.event_handled() {
            tracing::error!(node = %inner.label, error = %e, "acknowledging event failed; it will be replayed");
        }
        inner.publish(published);
    }
}
