//! Real ldk-node 0.7.1 instances on the in-process regtest chain, driven through the adapter.
//!
//! Each test starts its own chain and nodes (`lightning::testkit`). ldk-node needs a multi-thread
//! runtime. Waits are event-driven with generous timeouts.

use std::time::Duration;

use futures::StreamExt;
use l402_node::lightning::testkit::{Testkit, TestkitConfig, CHANNEL_CONFIRMATIONS, WAIT};
use l402_node::lightning::{
    FailReason, HoldState, LightningError, LightningEvent, LightningNode, PaymentOutcome, Preimage,
};
use l402_protocol::hold::HoldError;

const CHANNEL_SAT: u64 = 1_000_000;
const AMOUNT_MSAT: u64 = 50_000_000;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,ldk=off")),
        )
        .with_test_writer()
        .try_init();
}

async fn two_nodes_with_channel() -> anyhow::Result<Testkit> {
    init_tracing();
    let kit = Testkit::start(TestkitConfig {
        nodes: 2,
        ..Default::default()
    })
    .await?;
    kit.channel(0, 1, CHANNEL_SAT, None, false).await?;
    Ok(kit)
}

fn outbound_to(node: &LightningNode, peer: &LightningNode) -> u64 {
    node.channels()
        .iter()
        .filter(|c| c.counterparty == peer.node_id())
        .map(|c| c.outbound_msat)
        .sum()
}

/// Waits until `payer` can send exactly `expected` msat to `payee` again (the HTLC is gone).
async fn wait_outbound(
    payer: &LightningNode,
    payee: &LightningNode,
    expected: u64,
) -> anyhow::Result<()> {
    payer
        .wait_for(WAIT, "outbound capacity restored", |n| {
            (outbound_to(n, payee) == expected).then_some(())
        })
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn faucet_funded_node_opens_a_channel_ready_after_confirmations() -> anyhow::Result<()> {
    init_tracing();
    let kit = Testkit::start(TestkitConfig {
        nodes: 2,
        funding_sat: 2_000_000,
        ..Default::default()
    })
    .await?;
    let (a, b) = (kit.node(0), kit.node(1));
    assert_eq!(a.balances().onchain_spendable_sat, 2_000_000);
    let mut events = Box::pin(a.subscribe());

    let id = kit.open_channel(0, 1, CHANNEL_SAT, None, false).await?;
    assert!(a.channels().iter().all(|c| !c.is_ready));
    kit.mine_and_sync(CHANNEL_CONFIRMATIONS - 1).await?;
    assert!(
        a.channels().iter().all(|c| !c.is_ready),
        "ready before {CHANNEL_CONFIRMATIONS} confirmations"
    );
    assert!(b.channels().iter().all(|c| !c.is_ready));
    kit.mine_and_sync(1).await?;
    assert_eq!(a.wait_channel_ready(b.node_id(), WAIT).await?, id);
    b.wait_channel_ready(a.node_id(), WAIT).await?;

    // The stream saw the channel go pending, then ready.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(WAIT, events.next()).await? {
            Some(
                e @ (LightningEvent::ChannelPending { .. } | LightningEvent::ChannelReady { .. }),
            ) => seen.push(e),
            Some(_) => {}
            None => anyhow::bail!("event stream ended"),
        }
    }
    assert!(matches!(seen[0], LightningEvent::ChannelPending { channel, .. } if channel == id));
    assert!(matches!(seen[1], LightningEvent::ChannelReady { channel, .. } if channel == id));
    let c = &a.channels()[0];
    assert_eq!(
        (c.capacity_sat, c.is_outbound, c.is_usable),
        (CHANNEL_SAT, true, true)
    );
    // The channel funds left the wallet.
    assert!(a.balances().onchain_total_sat < 2_000_000 - CHANNEL_SAT);
    kit.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn hold_invoice_claim_path_pays_the_right_amounts() -> anyhow::Result<()> {
    let kit = two_nodes_with_channel().await?;
    let (payer, payee) = (kit.node(0), kit.node(1));
    let payer_before = payer.balances().lightning_sat;
    let payee_before = payee.balances().lightning_sat;
    let mut payee_events = Box::pin(payee.subscribe());

    let preimage = Preimage([0x11; 32]);
    let hash = preimage.payment_hash();
    let invoice = payee.create_hold_invoice(hash, AMOUNT_MSAT, "claim path", 3600)?;
    assert_eq!(invoice.amount_msat(), Some(AMOUNT_MSAT));
    assert!(matches!(
        payee.create_hold_invoice(hash, AMOUNT_MSAT, "again", 3600),
        Err(LightningError::DuplicateHold(_))
    ));
    assert!(matches!(
        payee.claim(hash, &preimage),
        Err(LightningError::Hold {
            source: HoldError::NotClaimable,
            ..
        })
    ));

    assert_eq!(payer.pay(&invoice)?, hash);
    let (amount, deadline) = payee.wait_hold_claimable(hash, WAIT).await?;
    assert_eq!(amount, AMOUNT_MSAT);
    let deadline = deadline.expect("LDK reports a claim deadline");
    assert!(
        deadline > kit.chain.height(),
        "deadline {deadline} must be in the future"
    );
    // Held: the payer has no outcome yet.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), payer.wait_payment(hash, WAIT))
            .await
            .is_err()
    );

    let wrong = Preimage([0x12; 32]);
    assert!(matches!(
        payee.claim(hash, &wrong),
        Err(LightningError::Hold {
            source: HoldError::WrongPreimage,
            ..
        })
    ));
    payee.claim(hash, &preimage)?;
    assert_eq!(payee.wait_hold_claimed(hash, WAIT).await?, AMOUNT_MSAT);
    match payer.wait_payment(hash, WAIT).await? {
        PaymentOutcome::Succeeded {
            preimage: p,
            fee_paid_msat,
        } => {
            assert_eq!(p, Some(preimage));
            assert_eq!(
                fee_paid_msat.unwrap_or(0),
                0,
                "direct channel, no routing fee"
            );
        }
        other => anyhow::bail!("payment did not succeed: {other:?}"),
    }
    assert_eq!(
        payee.hold(&hash).map(|r| r.state),
        Some(HoldState::Claimed {
            amount_msat: AMOUNT_MSAT
        })
    );
    // Lightning balances moved by exactly the amount (the payer opened the channel and pays the
    // commitment fee, which does not change with no HTLC pending).
    payee
        .wait_for(WAIT, "payee balance", |n| {
            (n.balances().lightning_sat == payee_before + AMOUNT_MSAT / 1000).then_some(())
        })
        .await?;
    payer
        .wait_for(WAIT, "payer balance", |n| {
            (n.balances().lightning_sat == payer_before - AMOUNT_MSAT / 1000).then_some(())
        })
        .await?;
    // A claimed invoice cannot be failed.
    assert!(matches!(
        payee.fail(hash),
        Err(LightningError::Hold {
            source: HoldError::Terminal("claimed"),
            ..
        })
    ));

    let mut seen = Vec::new();
    while seen.len() < 2 {
        let e = tokio::time::timeout(WAIT, payee_events.next())
            .await?
            .expect("stream open");
        if matches!(
            e,
            LightningEvent::HoldClaimable { .. } | LightningEvent::HoldClaimed { .. }
        ) {
            seen.push(e);
        }
    }
    assert_eq!(
        seen,
        vec![
            LightningEvent::HoldClaimable {
                payment_hash: hash,
                amount_msat: AMOUNT_MSAT,
                claim_deadline: Some(deadline)
            },
            LightningEvent::HoldClaimed {
                payment_hash: hash,
                amount_msat: AMOUNT_MSAT
            },
        ]
    );
    kit.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn hold_invoice_fail_path_refunds_the_payer_in_full() -> anyhow::Result<()> {
    let kit = two_nodes_with_channel().await?;
    let (payer, payee) = (kit.node(0), kit.node(1));
    let outbound_before = outbound_to(payer, payee);
    let balance_before = payer.balances().lightning_sat;

    let preimage = Preimage([0x21; 32]);
    let hash = preimage.payment_hash();
    let invoice = payee.create_hold_invoice(hash, AMOUNT_MSAT, "fail path", 3600)?;
    payer.pay(&invoice)?;
    payee.wait_hold_claimable(hash, WAIT).await?;
    assert!(
        outbound_to(payer, payee) < outbound_before,
        "the HTLC is locked"
    );

    payee.fail(hash)?;
    assert_eq!(
        payee.hold(&hash).map(|r| r.state),
        Some(HoldState::Failed(FailReason::FailedBack))
    );
    match payer.wait_payment(hash, WAIT).await? {
        PaymentOutcome::Failed { reason } => {
            assert!(reason.contains("RecipientRejected"), "{reason}")
        }
        other => anyhow::bail!("payment did not fail: {other:?}"),
    }
    wait_outbound(payer, payee, outbound_before).await?;
    assert_eq!(payer.balances().lightning_sat, balance_before);
    // Failed is final: no claim afterwards.
    assert!(matches!(
        payee.claim(hash, &preimage),
        Err(LightningError::Hold {
            source: HoldError::Terminal("failed"),
            ..
        })
    ));
    kit.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn hold_invoice_expires_at_claim_deadline_and_refunds() -> anyhow::Result<()> {
    let kit = two_nodes_with_channel().await?;
    let (payer, payee) = (kit.node(0), kit.node(1));
    let outbound_before = outbound_to(payer, payee);

    let preimage = Preimage([0x31; 32]);
    let hash = preimage.payment_hash();
    let invoice = payee.create_hold_invoice(hash, AMOUNT_MSAT, "expiry path", 3600)?;
    payer.pay(&invoice)?;
    let (_, deadline) = payee.wait_hold_claimable(hash, WAIT).await?;
    let deadline = deadline.expect("claim deadline");

    // One block short of the deadline: still held, still claimable.
    let height = kit.chain.height();
    kit.chain.mine(deadline - 1 - height);
    payee.sync().await?;
    assert_eq!(payee.height(), deadline - 1);
    assert!(matches!(
        payee.hold(&hash).map(|r| r.state),
        Some(HoldState::Claimable { .. })
    ));

    // At the deadline LDK fails the HTLC back by itself; the adapter records it.
    kit.chain.mine(1);
    payee.sync().await?;
    assert_eq!(
        payee.hold(&hash).map(|r| r.state),
        Some(HoldState::Failed(FailReason::Expired { height: deadline }))
    );
    assert!(matches!(
        payee.claim(hash, &preimage),
        Err(LightningError::Hold {
            source: HoldError::Terminal("failed"),
            ..
        })
    ));
    assert!(matches!(
        payer.wait_payment(hash, WAIT).await?,
        PaymentOutcome::Failed { .. }
    ));
    wait_outbound(payer, payee, outbound_before).await?;
    kit.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn held_payment_survives_a_payee_restart_and_is_claimed() -> anyhow::Result<()> {
    let mut kit = two_nodes_with_channel().await?;
    let preimage = Preimage([0x41; 32]);
    let hash = preimage.payment_hash();
    let invoice = kit
        .node(1)
        .create_hold_invoice(hash, AMOUNT_MSAT, "restart", 3600)?;
    kit.node(0).pay(&invoice)?;
    let (amount, deadline) = kit.node(1).wait_hold_claimable(hash, WAIT).await?;

    kit.restart(1).await?;
    // ldk-node will not emit PaymentClaimable again; the persisted record still says claimable.
    assert_eq!(
        kit.node(1).hold(&hash).map(|r| r.state),
        Some(HoldState::Claimable {
            amount_msat: amount,
            claim_deadline: deadline
        })
    );
    kit.node(1).claim(hash, &preimage)?;
    assert_eq!(
        kit.node(1).wait_hold_claimed(hash, WAIT).await?,
        AMOUNT_MSAT
    );
    assert!(matches!(
        kit.node(0).wait_payment(hash, WAIT).await?,
        PaymentOutcome::Succeeded { preimage: Some(p), .. } if p == preimage
    ));
    // The payer also restarts: the outcome (and the preimage, the proof of payment) is still known.
    kit.restart(0).await?;
    assert!(matches!(
        kit.node(0).wait_payment(hash, WAIT).await?,
        PaymentOutcome::Succeeded { preimage: Some(p), .. } if p == preimage
    ));
    kit.shutdown().await?;
    Ok(())
}

/// A payment refused because the only channel's partner is offline is a typed `NoRoute`, counts
/// as not started (a restart may pay it), and `pay_when_routable` sends it once the partner is
/// back: what a peer paying a restarting coordinator meets.
#[tokio::test(flavor = "multi_thread")]
async fn payment_waits_for_a_restarting_payee_and_goes_out_or_ends_at_shutdown(
) -> anyhow::Result<()> {
    let mut kit = two_nodes_with_channel().await?;
    let preimage = Preimage([0x52; 32]);
    let hash = preimage.payment_hash();
    let invoice = kit
        .node(1)
        .create_hold_invoice(hash, AMOUNT_MSAT, "reconnect", 3600)?;
    let config = kit.stop(1).await?;
    let payer = kit.shared(0);
    payer
        .wait_for(WAIT, "the channel partner offline", |n| {
            n.channels()
                .iter()
                .all(|c| c.is_ready && !c.is_usable)
                .then_some(())
        })
        .await?;
    // Nothing can leave: a typed refusal, and the payment does not count as started.
    assert!(matches!(payer.pay(&invoice), Err(LightningError::NoRoute(h)) if h == hash));
    assert!(!payer.outbound_started(hash));
    // Waiting for the partner: sent as soon as it is back.
    let waiting = {
        let (payer, invoice) = (payer.clone(), invoice.clone());
        tokio::spawn(async move { payer.pay_when_routable(&invoice, WAIT).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "gave up while the partner was away");
    kit.start_again(1, config).await?;
    assert_eq!(waiting.await??, hash);
    assert!(payer.outbound_started(hash));
    kit.node(1).wait_hold_claimable(hash, WAIT).await?;
    kit.node(1).claim(hash, &preimage)?;
    assert!(matches!(
        payer.wait_payment(hash, WAIT).await?,
        PaymentOutcome::Succeeded { preimage: Some(p), .. } if p == preimage
    ));
    // Shutting down while a payment waits for its route: the wait ends at once, typed, and
    // lets go of its clone, so the node can be stopped cleanly.
    let second = kit.node(1).create_hold_invoice(
        Preimage([0x53; 32]).payment_hash(),
        AMOUNT_MSAT,
        "shutdown",
        3600,
    )?;
    let _ = kit.stop(1).await?;
    payer
        .wait_for(WAIT, "the channel partner offline", |n| {
            n.reconnecting_partners().len().eq(&1).then_some(())
        })
        .await?;
    let waiting = {
        let (payer, second) = (payer.clone(), second.clone());
        tokio::spawn(async move { payer.pay_when_routable(&second, WAIT).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "gave up while the partner was away");
    payer.begin_stop();
    let ended = tokio::time::timeout(Duration::from_secs(5), waiting).await??;
    assert!(
        matches!(ended, Err(LightningError::Stopping(_))),
        "{ended:?}"
    );
    assert!(!payer.outbound_started(second.payment_hash()));
    drop(payer);
    kit.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn routed_hold_invoice_through_an_announced_hub() -> anyhow::Result<()> {
    init_tracing();
    let kit = Testkit::start(TestkitConfig {
        nodes: 3,
        ..Default::default()
    })
    .await?;
    let (payer, hub, payee) = (kit.node(0), kit.node(1), kit.node(2));
    // payer -> hub -> payee, announced (ldk-node 0.7 forwards only over announced channels).
    kit.open_channel(0, 1, CHANNEL_SAT, None, true).await?;
    kit.open_channel(1, 2, CHANNEL_SAT, None, true).await?;
    kit.confirm_channels().await?;
    assert!(hub.channels().iter().all(|c| c.is_announced));
    // The payer learns the hub -> payee channel by gossip.
    payer.wait_graph_channels(2, WAIT).await?;

    let preimage = Preimage([0x51; 32]);
    let hash = preimage.payment_hash();
    let invoice = payee.create_hold_invoice(hash, AMOUNT_MSAT, "routed", 3600)?;
    payer.pay(&invoice)?;
    let (amount, _) = payee.wait_hold_claimable(hash, WAIT).await?;
    assert_eq!(amount, AMOUNT_MSAT);
    payee.claim(hash, &preimage)?;
    assert_eq!(payee.wait_hold_claimed(hash, WAIT).await?, AMOUNT_MSAT);
    match payer.wait_payment(hash, WAIT).await? {
        PaymentOutcome::Succeeded {
            preimage: p,
            fee_paid_msat,
        } => {
            assert_eq!(p, Some(preimage));
            assert!(
                fee_paid_msat.unwrap_or(0) > 0,
                "the hub charges a forwarding fee"
            );
        }
        other => anyhow::bail!("routed payment did not succeed: {other:?}"),
    }
    hub.wait_for(WAIT, "forward recorded", |n| {
        (n.forwarded_count() == 1).then_some(())
    })
    .await?;
    kit.shutdown().await?;
    Ok(())
}
