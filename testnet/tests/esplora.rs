//! The Esplora surface of the regtest chain, spoken to through esplora-client 0.12.3 (the client
//! ldk-node 0.7.1 uses, same version and features) and through raw HTTP for status codes.

use std::time::Duration;

use bitcoin::consensus::encode::serialize_hex;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::{
    absolute, Address, Amount, CompressedPublicKey, Network, OutPoint, ScriptBuf, Sequence,
    Transaction, TxIn, TxOut, Txid, Witness,
};
use l402_testnet::{Testnet, TestnetConfig};

fn address(byte: u8) -> Address {
    let secp = Secp256k1::new();
    let sk = SecretKey::from_slice(&[byte; 32]).expect("valid key");
    Address::p2wpkh(&CompressedPublicKey(sk.public_key(&secp)), Network::Regtest)
}

fn client(testnet: &Testnet) -> esplora_client::AsyncClient {
    esplora_client::Builder::new(&testnet.url())
        .timeout(10)
        .build_async()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_the_ldk_node_endpoints_in_their_formats() -> anyhow::Result<()> {
    let testnet = Testnet::start(TestnetConfig::default()).await?;
    let c = client(&testnet);

    // 1. fee estimates
    let fees = c.get_fee_estimates().await?;
    assert_eq!(fees.get(&1), Some(&1.0));
    // 9. tip hash (text), 4. block-height (text)
    assert_eq!(c.get_tip_hash().await?, testnet.tip_hash());
    assert_eq!(c.get_height().await?, 110);
    let genesis = bitcoin::constants::genesis_block(Network::Regtest).block_hash();
    assert_eq!(c.get_block_hash(0).await?, genesis);
    // 3. latest blocks, tip first, linked
    let infos = c.get_block_infos(None).await?;
    assert_eq!(infos.len(), 10);
    assert_eq!(infos[0].height, 110);
    assert_eq!(infos[0].id, testnet.tip_hash());
    for w in infos.windows(2) {
        assert_eq!(w[0].previousblockhash, Some(w[1].id));
        assert!(w[0].timestamp > w[1].mediantime);
    }
    // 10. header (hex) and 11. status
    let header = c.get_header_by_hash(&testnet.tip_hash()).await?;
    assert_eq!(header.block_hash(), testnet.tip_hash());
    let status = c.get_block_status(&infos[1].id).await?;
    assert!(status.in_best_chain);
    assert_eq!(status.height, Some(109));
    assert_eq!(status.next_best, Some(infos[0].id));

    // A faucet payment, unconfirmed.
    let dest = address(7);
    let txid = testnet.fund(&dest, Amount::from_sat(1_000_000))?;
    // 7. tx info with prevouts and fee
    let info = c.get_tx_info(&txid).await?.expect("known");
    assert!(!info.status.confirmed);
    assert!(info
        .vin
        .iter()
        .all(|v| v.prevout.is_some() && !v.is_coinbase));
    assert!(info.fee > 0);
    // 5. script history includes mempool txs
    let hist = c.scripthash_txs(&dest.script_pubkey(), None).await?;
    assert_eq!(hist.iter().map(|t| t.txid).collect::<Vec<_>>(), vec![txid]);
    // 12. no merkle proof while unconfirmed (404 => None)
    assert!(c.get_merkle_block(&txid).await?.is_none());
    // 13. raw bytes
    let raw = c.get_tx(&txid).await?.expect("raw");
    assert_eq!(raw.compute_txid(), txid);
    // 8. outspend of the new output: unspent; of the faucet coin it spends: spent by txid
    let out = c.get_output_status(&txid, 0).await?.expect("exists");
    assert!(!out.spent);
    let spent = raw.input[0].previous_output;
    let out = c
        .get_output_status(&spent.txid, spent.vout as u64)
        .await?
        .expect("exists");
    assert!(out.spent);
    assert_eq!(out.txid, Some(txid));
    assert_eq!(out.vin, Some(0));

    testnet.mine(1);
    let info = c.get_tx_info(&txid).await?.expect("known");
    assert!(info.status.confirmed);
    assert_eq!(info.status.block_height, Some(111));
    assert_eq!(info.status.block_hash, Some(testnet.tip_hash()));
    assert!(info.status.block_time.is_some());
    // 12. merkle-block proof that LDK can verify: one match, the right root.
    let mb = c.get_merkle_block(&txid).await?.expect("confirmed");
    let (mut matches, mut indexes) = (Vec::new(), Vec::new());
    let root = mb.txn.extract_matches(&mut matches, &mut indexes)?;
    assert_eq!(root, mb.header.merkle_root);
    assert_eq!(matches, vec![txid]);
    assert_eq!(indexes, vec![1]); // after the coinbase
                                  // 2. duplicate broadcast is fine
    c.broadcast(&raw).await?;

    // Unknown txid: 404 => None everywhere.
    let unknown = Txid::from_byte_array([0x11; 32]);
    assert!(c.get_tx_info(&unknown).await?.is_none());
    assert!(c.get_tx(&unknown).await?.is_none());
    assert!(c.get_merkle_block(&unknown).await?.is_none());
    assert!(c.get_output_status(&unknown, 0).await?.is_none());

    // 5 + 6. pagination: 31 payments to one script come back as 25 + 6, newest first, no repeats.
    for _ in 0..30 {
        testnet.fund(&dest, Amount::from_sat(10_000))?;
    }
    testnet.mine(1);
    let page1 = c.scripthash_txs(&dest.script_pubkey(), None).await?;
    assert_eq!(page1.len(), 25);
    let page2 = c
        .scripthash_txs(&dest.script_pubkey(), page1.last().map(|t| t.txid))
        .await?;
    assert_eq!(page2.len(), 6);
    assert_eq!(page2.last().map(|t| t.txid), Some(txid));
    let mut all: Vec<Txid> = page1.iter().chain(&page2).map(|t| t.txid).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 31);
    Ok(())
}

async fn post_tx(http: &reqwest::Client, url: &str, body: String) -> (u16, String) {
    let r = http
        .post(format!("{url}/tx"))
        .body(body)
        .send()
        .await
        .expect("http");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

async fn get_status(http: &reqwest::Client, url: &str, path: &str) -> u16 {
    http.get(format!("{url}{path}"))
        .send()
        .await
        .expect("http")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_broadcasts_get_400_with_a_reason_and_unknowns_get_404() -> anyhow::Result<()> {
    let testnet = Testnet::start(TestnetConfig::default()).await?;
    let url = testnet.url();
    let http = reqwest::Client::new();

    // Garbage.
    let (s, body) = post_tx(&http, &url, "zz-not-hex".into()).await;
    assert_eq!(
        (s, body.starts_with("TX decode failed")),
        (400, true),
        "{body}"
    );
    let (s, body) = post_tx(&http, &url, "0200".into()).await;
    assert_eq!(
        (s, body.starts_with("TX decode failed")),
        (400, true),
        "{body}"
    );

    // A real payment, then a conflicting spend of the same faucet coin.
    let txid = testnet.fund(&address(9), Amount::from_sat(500_000))?;
    let tx = testnet
        .with_chain(|c| c.mempool_tx(&txid).map(|r| r.tx.clone()))
        .expect("in mempool");
    let mut conflict = tx.clone();
    conflict.output[0].value = Amount::from_sat(400_000);
    let (s, body) = post_tx(&http, &url, serialize_hex(&conflict)).await;
    assert_eq!(s, 400, "{body}");
    assert!(body.starts_with("txn-mempool-conflict"), "{body}");
    assert!(body.contains(&txid.to_string()), "{body}");

    // Duplicate broadcast: 200 with the txid.
    let (s, body) = post_tx(&http, &url, serialize_hex(&tx)).await;
    assert_eq!((s, body), (200, txid.to_string()));

    // Spending the faucet's change without a signature fails script verification.
    let change = OutPoint { txid, vout: 1 };
    let unsigned = spend(
        change,
        tx.output[1].value - Amount::from_sat(1_000),
        absolute::LockTime::ZERO,
    );
    let (s, body) = post_tx(&http, &url, serialize_hex(&unsigned)).await;
    assert_eq!(s, 400, "{body}");
    assert!(
        body.starts_with("mandatory-script-verify-flag-failed: input 0"),
        "{body}"
    );

    // Spending more than the input is worth.
    let too_much = spend(
        change,
        tx.output[1].value + Amount::from_sat(1),
        absolute::LockTime::ZERO,
    );
    let (s, body) = post_tx(&http, &url, serialize_hex(&too_much)).await;
    assert_eq!(s, 400);
    assert!(body.starts_with("bad-txns-in-belowout"), "{body}");

    // A lock time in the future.
    let height = testnet.height();
    let locked = spend(
        change,
        Amount::from_sat(1_000),
        absolute::LockTime::from_height(height + 10)?,
    );
    let (s, body) = post_tx(&http, &url, serialize_hex(&locked)).await;
    assert_eq!(s, 400);
    assert!(body.starts_with("non-final"), "{body}");

    // An unknown input.
    let missing = spend(
        OutPoint {
            txid: Txid::from_byte_array([3; 32]),
            vout: 0,
        },
        Amount::from_sat(1_000),
        absolute::LockTime::ZERO,
    );
    let (s, body) = post_tx(&http, &url, serialize_hex(&missing)).await;
    assert_eq!(s, 400);
    assert!(body.contains("does not exist"), "{body}");

    // Spending the newest coinbase is premature.
    let cb = testnet.with_chain(|c| c.tip().block.txdata[0].compute_txid());
    let immature = spend(
        OutPoint { txid: cb, vout: 0 },
        Amount::from_sat(1_000),
        absolute::LockTime::ZERO,
    );
    let (s, body) = post_tx(&http, &url, serialize_hex(&immature)).await;
    assert_eq!(s, 400);
    assert!(
        body.starts_with("bad-txns-premature-spend-of-coinbase"),
        "{body}"
    );

    // After confirmation the conflict is a spend of a chain-spent output.
    testnet.mine(1);
    let (s, body) = post_tx(&http, &url, serialize_hex(&conflict)).await;
    assert_eq!(s, 400);
    assert!(body.contains("spent in the chain"), "{body}");
    // ...and the original is still a harmless duplicate.
    let (s, _) = post_tx(&http, &url, serialize_hex(&tx)).await;
    assert_eq!(s, 200);

    // 404 for unknown, 400 for malformed, never 500.
    let unknown = Txid::from_byte_array([0x22; 32]);
    for path in [
        format!("/tx/{unknown}"),
        format!("/tx/{unknown}/raw"),
        format!("/tx/{unknown}/merkleblock-proof"),
        format!("/tx/{unknown}/outspend/0"),
        format!("/tx/{txid}/outspend/7"),
        format!("/block/{unknown}/header"),
        format!("/block/{unknown}/status"),
        "/block-height/999999".to_string(),
    ] {
        assert_eq!(get_status(&http, &url, &path).await, 404, "{path}");
    }
    for path in [
        "/tx/not-a-txid",
        "/block-height/minus-one",
        "/scripthash/zz/txs",
        "/tx/00/outspend/x",
    ] {
        assert_eq!(get_status(&http, &url, path).await, 400, "{path}");
    }
    // Hashes are bare text.
    let tip = http
        .get(format!("{url}/blocks/tip/hash"))
        .send()
        .await?
        .text()
        .await?;
    assert_eq!(tip, testnet.tip_hash().to_string());
    Ok(())
}

fn spend(outpoint: OutPoint, value: Amount, lock_time: absolute::LockTime) -> Transaction {
    Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time,
        input: vec![TxIn {
            previous_output: outpoint,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_LOCKTIME_NO_RBF,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value,
            script_pubkey: address(5).script_pubkey(),
        }],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http_mining_and_faucet() -> anyhow::Result<()> {
    let testnet = Testnet::start(TestnetConfig {
        premine: 101,
        ..TestnetConfig::default()
    })
    .await?;
    let url = testnet.url();
    let http = reqwest::Client::new();
    let dest = address(3);
    let r = http
        .post(format!("{url}/faucet"))
        .json(&serde_json::json!({"address": dest.to_string(), "amount_sat": 250_000, "confirm": true}))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 200);
    let txid: Txid = r.text().await?.parse()?;
    testnet.wait_for_tx(txid, Duration::from_secs(5)).await?;
    assert_eq!(testnet.height(), 102);
    let r = http
        .post(format!("{url}/mine"))
        .json(&serde_json::json!({"blocks": 3}))
        .send()
        .await?;
    let hashes: Vec<String> = r.json().await?;
    assert_eq!(hashes.len(), 3);
    assert_eq!(testnet.height(), 105);
    let r = http
        .post(format!("{url}/faucet"))
        .json(&serde_json::json!({"address": "bc1qnotregtest", "amount_sat": 1}))
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 400);
    Ok(())
}
