//! Seed 004's scenarios against [`ModePolicy`], time advanced by hand.

use super::*;

const T0: u64 = 1_000_000;

fn auto() -> ModePolicy {
    ModePolicy::new(HybridConfig::default(), RoomMode::Auto, true)
}

fn name(i: usize) -> String {
    format!("p{i:02}")
}

/// Admits `p{from}..p{to}` (inclusive) one by one; all P2P-capable.
fn join_range(p: &mut ModePolicy, now: u64, from: usize, to: usize) -> Vec<Action> {
    let mut all = Vec::new();
    for i in from..=to {
        let (adm, actions) = p.request_join(now, &name(i), true);
        assert_eq!(adm, Admission::Admit, "p{i} admitted");
        all.extend(actions);
    }
    all
}

fn started(actions: &[Action]) -> Option<ModeChange> {
    actions.iter().find_map(|a| match a {
        Action::MigrationStarted { change } => Some(*change),
        _ => None,
    })
}

fn sent(actions: &[Action]) -> Vec<(Vec<String>, ModeChange)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendModeChange { to, change } => Some((to.clone(), *change)),
            _ => None,
        })
        .collect()
}

fn admitted(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Admit { identity } => Some(identity.clone()),
            _ => None,
        })
        .collect()
}

/// Everyone admitted sends `mode_ready`; the returned actions are those of the last one.
fn ready_all(p: &mut ModePolicy, now: u64, id: u64) -> Vec<Action> {
    let names: Vec<String> = p.members.keys().cloned().collect();
    let mut last = Vec::new();
    for n in names {
        last = p.ready(now, &n, id);
    }
    last
}

/// An auto room at 8 participants that finished its move to SFU at `T0`.
fn sfu_room_of_eight() -> ModePolicy {
    let mut p = auto();
    let actions = join_range(&mut p, T0, 1, 8);
    let change = started(&actions).expect("8 migrates");
    ready_all(&mut p, T0, change.id);
    assert_eq!(p.mode(), Topology::Sfu);
    p
}

#[test]
fn seven_to_eight_migrates_to_sfu() {
    let mut p = auto();
    assert_eq!(p.mode(), Topology::P2p);
    let actions = join_range(&mut p, T0, 1, 7);
    assert_eq!(started(&actions), None);
    assert!(p.relay_allowed() && !p.sessions_allowed());

    let (adm, actions) = p.request_join(T0 + 10, &name(8), true);
    assert_eq!(adm, Admission::Admit);
    let change = started(&actions).expect("the 8th join migrates");
    assert_eq!((change.from, change.to), (Topology::P2p, Topology::Sfu));
    assert_eq!(change.reason, Reason::Threshold);
    assert_eq!(change.strategy, Strategy::Gradual);
    assert_eq!(change.grace_ms, 5_000);
    let s = sent(&actions);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].0.len(), 8, "mode_change to every admitted participant");
    assert!(
        p.relay_allowed() && p.sessions_allowed(),
        "both paths while migrating"
    );

    // Not done until the last one is ready; acks alone never complete it.
    for i in 1..=8 {
        p.ack(&name(i), change.id);
    }
    for i in 1..=7 {
        assert!(p.ready(T0 + 500, &name(i), change.id).is_empty());
    }
    assert_eq!(p.mode(), Topology::P2p);
    let done = p.ready(T0 + 1_500, &name(8), change.id);
    assert_eq!(p.mode(), Topology::Sfu);
    assert!(p.migrating().is_none());
    assert!(done.contains(&Action::MigrationCompleted {
        change,
        duration_ms: 1_490
    }));
    assert!(done.contains(&Action::Settled {
        id: change.id,
        mode: Topology::Sfu
    }));
    assert!(!done.contains(&Action::CloseSessions));
}

#[test]
fn eight_to_six_stays_sfu() {
    let mut p = sfu_room_of_eight();
    let later = T0 + 60_000;
    assert!(started(&p.leave(later, &name(8))).is_none());
    assert!(started(&p.leave(later, &name(7))).is_none());
    assert_eq!(p.members(), 6);
    assert_eq!(p.mode(), Topology::Sfu);
    assert!(p.migrating().is_none());
}

#[test]
fn down_to_five_returns_to_p2p_and_closes_sessions() {
    let mut p = sfu_room_of_eight();
    let later = T0 + 60_000;
    p.leave(later, &name(8));
    p.leave(later, &name(7));
    let actions = p.leave(later, &name(6));
    let change = started(&actions).expect("5 returns to p2p");
    assert_eq!((change.from, change.to), (Topology::Sfu, Topology::P2p));
    assert_eq!(change.reason, Reason::Threshold);
    assert_eq!(sent(&actions)[0].0.len(), 5);
    let done = ready_all(&mut p, later + 800, change.id);
    assert_eq!(p.mode(), Topology::P2p);
    assert!(done.contains(&Action::CloseSessions));
    assert!(!p.sessions_allowed());
}

#[test]
fn prewarm_fires_at_six_once() {
    let mut p = auto();
    let count = |a: &[Action]| a.iter().filter(|a| **a == Action::Prewarm).count();
    assert_eq!(count(&join_range(&mut p, T0, 1, 5)), 0);
    assert_eq!(count(&join_range(&mut p, T0, 6, 6)), 1);
    assert_eq!(count(&join_range(&mut p, T0, 7, 7)), 0);
    // Dropping below and coming back is a new stretch: it fires again.
    p.leave(T0, &name(7));
    assert_eq!(count(&p.leave(T0, &name(6))), 0);
    assert_eq!(count(&join_range(&mut p, T0, 6, 6)), 1);
}

#[test]
fn prewarm_with_the_sfu_down_notices_instead() {
    let mut p = ModePolicy::new(HybridConfig::default(), RoomMode::Auto, false);
    let actions = join_range(&mut p, T0, 1, 6);
    assert!(!actions.contains(&Action::Prewarm));
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Notice {
            code: "sfu_unavailable",
            ..
        }
    )));
}

#[test]
fn cooldown_blocks_flapping() {
    // 8 → SFU (done at T0), 5 → would go P2P, but within the cooldown it stays.
    let mut p = sfu_room_of_eight();
    let t = T0 + 2_000;
    for i in 6..=8 {
        assert!(started(&p.leave(t, &name(i))).is_none());
    }
    assert_eq!(p.mode(), Topology::Sfu);
    // Back to 8 within the cooldown: still SFU, nothing to do.
    assert!(started(&join_range(&mut p, t + 100, 6, 8)).is_none());
    // Down to 5 again; the cooldown's end re-evaluates and migrates then, not before.
    for i in 6..=8 {
        p.leave(t + 200, &name(i));
    }
    let end = T0 + 10_000;
    assert_eq!(p.poll_timeout(), Some(end));
    assert!(started(&p.handle_timeout(end - 1)).is_none());
    let change = started(&p.handle_timeout(end)).expect("migrates once the cooldown ends");
    assert_eq!(change.to, Topology::P2p);
}

#[test]
fn unacked_mode_change_is_resent_only_to_non_ackers() {
    let mut p = auto();
    let change = started(&join_range(&mut p, T0, 1, 8)).unwrap();
    for i in 1..=6 {
        p.ack(&name(i), change.id);
    }
    assert_eq!(p.poll_timeout(), Some(T0 + 3_000));
    assert!(sent(&p.handle_timeout(T0 + 2_999)).is_empty());
    let resent = sent(&p.handle_timeout(T0 + 3_000));
    assert_eq!(
        resent,
        vec![(vec![name(7), name(8)], change)],
        "same id, non-ackers only"
    );
    p.ack(&name(7), change.id);
    let resent = sent(&p.handle_timeout(T0 + 6_000));
    assert_eq!(resent, vec![(vec![name(8)], change)]);
    // A stale id acks nothing.
    p.ack(&name(8), change.id + 7);
    assert_eq!(sent(&p.handle_timeout(T0 + 9_000)).len(), 1);
}

#[test]
fn migration_stuck_30s_resets_to_the_source_mode() {
    let mut p = auto();
    let change = started(&join_range(&mut p, T0, 1, 8)).unwrap();
    for i in 1..=8 {
        p.ack(&name(i), change.id);
    }
    p.ready(T0 + 100, &name(1), change.id);
    assert_eq!(p.poll_timeout(), Some(T0 + 30_000));
    let actions = p.handle_timeout(T0 + 30_000);
    assert!(actions.contains(&Action::MigrationFailed {
        change,
        reason: Reason::Timeout,
        duration_ms: 30_000
    }));
    let s = sent(&actions);
    assert_eq!(s.len(), 1);
    let (to, reset) = &s[0];
    assert_eq!(to.len(), 8);
    assert_ne!(reset.id, change.id, "a reset has its own id");
    assert_eq!((reset.from, reset.to), (Topology::Sfu, Topology::P2p));
    assert_eq!(reset.reason, Reason::Timeout);
    assert!(actions.contains(&Action::Settled {
        id: reset.id,
        mode: Topology::P2p
    }));
    assert!(actions.contains(&Action::CloseSessions));
    assert_eq!(p.mode(), Topology::P2p);
    assert!(p.migrating().is_none());
    // Cooldown: 8 participants, but no new attempt before it ends.
    assert!(started(&p.handle_timeout(T0 + 35_000)).is_none());
    assert!(started(&p.handle_timeout(T0 + 40_000)).is_some());
}

#[test]
fn concurrent_joins_during_migration_are_queued_then_admitted_into_sfu() {
    let mut p = auto();
    join_range(&mut p, T0, 1, 7);
    // Three join at once: the first crosses sfu_at, the other two wait.
    let (a8, actions) = p.request_join(T0, &name(8), true);
    assert_eq!(a8, Admission::Admit);
    let change = started(&actions).unwrap();
    let (a9, _) = p.request_join(T0 + 1, &name(9), true);
    let (a10, _) = p.request_join(T0 + 2, &name(10), true);
    assert_eq!(
        a9,
        Admission::Queued {
            position: 1,
            estimated_wait_ms: 29_999
        }
    );
    assert!(matches!(a10, Admission::Queued { position: 2, .. }));
    assert_eq!((p.members(), p.queued()), (8, 2));
    // Queued joiners are not asked to be ready.
    let done = ready_all(&mut p, T0 + 900, change.id);
    assert_eq!(admitted(&done), vec![name(9), name(10)]);
    assert_eq!(p.members(), 10);
    assert_eq!(p.mode(), Topology::Sfu);
    assert!(started(&done).is_none(), "no second migration");
    assert!(p.migrating().is_none());
    // The admission comes after the mode settled, so they join into SFU.
    let settled = done
        .iter()
        .position(|a| matches!(a, Action::Settled { .. }))
        .unwrap();
    let first_admit = done
        .iter()
        .position(|a| matches!(a, Action::Admit { .. }))
        .unwrap();
    assert!(settled < first_admit);
}

#[test]
fn queued_joins_that_push_the_count_do_not_start_a_second_migration() {
    // SFU → P2P at 5; four join meanwhile: admitted into P2P, and the count of 9 does not
    // bounce the room straight back (cooldown).
    let mut p = sfu_room_of_eight();
    let t = T0 + 60_000;
    for i in 6..=8 {
        p.leave(t, &name(i));
    }
    let change = p.migrating().expect("5 → p2p");
    for i in 20..=23 {
        assert!(matches!(
            p.request_join(t + 10, &name(i), true).0,
            Admission::Queued { .. }
        ));
    }
    let done = ready_all(&mut p, t + 500, change.id);
    assert_eq!(admitted(&done).len(), 4);
    assert_eq!(p.members(), 9);
    assert_eq!(p.mode(), Topology::P2p);
    assert!(started(&done).is_none());
    assert!(p.migrating().is_none());
}

#[test]
fn queued_joiner_that_gives_up_is_not_admitted() {
    let mut p = auto();
    let change = started(&join_range(&mut p, T0, 1, 8)).unwrap();
    assert!(matches!(
        p.request_join(T0, "late", true).0,
        Admission::Queued { .. }
    ));
    p.cancel_join("late");
    assert!(admitted(&ready_all(&mut p, T0 + 1, change.id)).is_empty());
}

#[test]
fn leaving_non_ready_participant_completes_the_migration() {
    let mut p = auto();
    let change = started(&join_range(&mut p, T0, 1, 8)).unwrap();
    for i in 1..=7 {
        p.ready(T0 + 1, &name(i), change.id);
    }
    let done = p.leave(T0 + 2, &name(8));
    assert!(done.iter().any(|a| matches!(a, Action::Settled { .. })));
    assert_eq!(p.mode(), Topology::Sfu);
}

#[test]
fn mode_failed_falls_back_to_p2p_with_sfu_failed() {
    let mut p = auto();
    let change = started(&join_range(&mut p, T0, 1, 8)).unwrap();
    let actions = p.failed(T0 + 4_000, &name(3), change.id);
    assert!(actions.contains(&Action::MigrationFailed {
        change,
        reason: Reason::SfuFailed,
        duration_ms: 4_000
    }));
    let s = sent(&actions);
    assert_eq!(s[0].1.to, Topology::P2p);
    assert_eq!(s[0].1.reason, Reason::SfuFailed);
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Notice {
            code: "sfu_failed",
            ..
        }
    )));
    assert!(actions.contains(&Action::CloseSessions));
    assert_eq!(p.mode(), Topology::P2p);
    // The reset's mode_change is resent until acked.
    for i in 1..=7 {
        p.ack(&name(i), s[0].1.id);
    }
    assert_eq!(
        sent(&p.handle_timeout(T0 + 7_000)),
        vec![(vec![name(8)], s[0].1)]
    );
}

#[test]
fn link_down_during_migration_falls_back_and_waits_for_health() {
    let mut p = auto();
    let change = started(&join_range(&mut p, T0, 1, 8)).unwrap();
    let actions = p.set_sfu_health(T0 + 100, false);
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::MigrationFailed { reason: Reason::SfuFailed, change: c, .. } if *c == change)));
    assert_eq!(p.mode(), Topology::P2p);
    let unavailable = |a: &[Action]| {
        a.iter()
            .filter(|a| {
                matches!(
                    a,
                    Action::Notice {
                        code: "sfu_unavailable",
                        ..
                    }
                )
            })
            .count()
    };
    assert_eq!(unavailable(&actions), 1, "said once, at the fallback");
    // Cooldown over but the SFU is still down: stays P2P, without repeating itself.
    let after = p.handle_timeout(T0 + 100 + 10_000);
    assert!(started(&after).is_none());
    assert_eq!(unavailable(&after), 0);
    // Healthy again: now it migrates.
    let back = p.set_sfu_health(T0 + 20_000, true);
    assert_eq!(started(&back).map(|c| c.to), Some(Topology::Sfu));
}

#[test]
fn sfu_down_at_start_keeps_p2p() {
    let mut p = ModePolicy::new(HybridConfig::default(), RoomMode::Auto, false);
    let actions = join_range(&mut p, T0, 1, 8);
    assert!(started(&actions).is_none());
    assert_eq!(p.mode(), Topology::P2p);
    assert!(!p.sessions_allowed());
}

#[test]
fn p2p_incapable_joiner_forces_sfu() {
    let mut p = auto();
    join_range(&mut p, T0, 1, 2);
    let (adm, actions) = p.request_join(T0, "whip-ish", false);
    assert_eq!(adm, Admission::Admit);
    let change = started(&actions).expect("forces sfu");
    assert_eq!(change.reason, Reason::P2pIncapable);
    ready_all(&mut p, T0 + 1, change.id);
    // While it is there the room never goes back, however small.
    assert!(started(&p.leave(T0 + 60_000, &name(1))).is_none());
    assert_eq!(p.mode(), Topology::Sfu);
    // Once it leaves, the cooldown-free count check brings the room back.
    assert!(started(&p.leave(T0 + 60_000, "whip-ish")).is_some());
}

#[test]
fn sfu_offer_in_p2p_forces_sfu_unless_pinned() {
    let mut p = auto();
    join_range(&mut p, T0, 1, 2);
    let c = started(&p.require_sfu(T0, Some(&name(1))).unwrap()).unwrap();
    assert_eq!(c.reason, Reason::P2pIncapable);
    let mut pinned = ModePolicy::new(HybridConfig::default(), RoomMode::P2p, true);
    join_range(&mut pinned, T0, 1, 2);
    assert_eq!(pinned.require_sfu(T0, None).unwrap_err().field, "mode");
}

#[test]
fn pinned_p2p_refuses_the_26th() {
    let mut p = ModePolicy::new(HybridConfig::default(), RoomMode::P2p, true);
    let actions = join_range(&mut p, T0, 1, 25);
    assert!(started(&actions).is_none());
    assert_eq!(p.mode(), Topology::P2p);
    let (adm, _) = p.request_join(T0, &name(26), true);
    match adm {
        Admission::Rejected(e) => assert_eq!(e.field, "room"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A resume of someone already in does not count twice.
    assert_eq!(p.request_join(T0, &name(25), true).0, Admission::Admit);
}

#[test]
fn pinned_sfu_never_migrates() {
    let mut p = ModePolicy::new(HybridConfig::default(), RoomMode::Sfu, true);
    let mut all = join_range(&mut p, T0, 1, 30);
    for i in 1..=29 {
        all.extend(p.leave(T0 + 100_000, &name(i)));
    }
    all.extend(p.handle_timeout(T0 + 200_000));
    assert!(started(&all).is_none());
    assert!(!all.contains(&Action::Prewarm));
    assert_eq!(p.mode(), Topology::Sfu);
    assert_eq!(p.poll_timeout(), None);
}

#[test]
fn setting_change_migrates_with_reason_setting() {
    let mut p = ModePolicy::new(HybridConfig::default(), RoomMode::Sfu, true);
    join_range(&mut p, T0, 1, 3);
    let actions = p.set_setting(T0, RoomMode::P2p).unwrap();
    assert_eq!(
        actions[0],
        Action::SettingChanged {
            setting: RoomMode::P2p
        }
    );
    let c = started(&actions).unwrap();
    assert_eq!((c.to, c.reason), (Topology::P2p, Reason::Setting));
    ready_all(&mut p, T0 + 1, c.id);
    // Auto at 3 participants in P2P: stays.
    assert!(started(&p.set_setting(T0 + 2, RoomMode::Auto).unwrap()).is_none());
    // Pinning P2P is refused while someone cannot do it.
    let mut q = ModePolicy::new(HybridConfig::default(), RoomMode::Sfu, true);
    q.request_join(T0, "whip", false);
    assert_eq!(q.set_setting(T0, RoomMode::P2p).unwrap_err().field, "mode");
}

#[test]
fn sfu_to_p2p_failure_goes_back_to_sfu() {
    let mut p = sfu_room_of_eight();
    let t = T0 + 60_000;
    for i in 6..=8 {
        p.leave(t, &name(i));
    }
    let change = p.migrating().unwrap();
    let actions = p.failed(t + 10, &name(1), change.id);
    assert_eq!(p.mode(), Topology::Sfu);
    assert_eq!(sent(&actions)[0].1.reason, Reason::P2pFailed);
    assert!(!actions.contains(&Action::CloseSessions));
}

#[test]
fn config_validation_names_the_key() {
    let ok = HybridConfig::default();
    assert!(ok.validate().is_ok());
    let bad = HybridConfig {
        sfu_at: 5,
        ..ok.clone()
    };
    assert_eq!(bad.validate().unwrap_err().0, "sfu_at");
    let bad = HybridConfig {
        prewarm_at: 9,
        ..ok.clone()
    };
    assert_eq!(bad.validate().unwrap_err().0, "prewarm_at");
    let bad = HybridConfig {
        migration_timeout_ms: 1_000,
        ..ok
    };
    assert_eq!(bad.validate().unwrap_err().0, "migration_timeout_ms");
}

/// One step of a random schedule for the property test below.
#[derive(Debug, Clone)]
enum Step {
    Join(u8, bool),
    Leave(u8),
    Cancel(u8),
    Ack(u8),
    Ready(u8),
    Failed(u8),
    Health(bool),
    Setting(u8),
    RequireSfu(u8),
    Advance(u16),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (0u8..12, any::<bool>()).prop_map(|(i, c)| Step::Join(i, c)),
        3 => (0u8..12).prop_map(Step::Leave),
        1 => (0u8..12).prop_map(Step::Cancel),
        2 => (0u8..12).prop_map(Step::Ack),
        4 => (0u8..12).prop_map(Step::Ready),
        1 => (0u8..12).prop_map(Step::Failed),
        1 => any::<bool>().prop_map(Step::Health),
        1 => (0u8..3).prop_map(Step::Setting),
        1 => (0u8..12).prop_map(Step::RequireSfu),
        3 => (0u16..5_000).prop_map(Step::Advance),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

    /// Any schedule: no panic; a queue exists only during a migration; a migration always has
    /// a deadline armed; the room never counts more than the distinct admitted identities; and
    /// once the clock passes every deadline with nobody failing, nothing is left queued.
    #[test]
    fn any_schedule_keeps_the_invariants(steps in proptest::collection::vec(step(), 1..80)) {
        let config = HybridConfig { sfu_at: 4, p2p_at: 2, prewarm_at: 3, p2p_limit: 6, ..HybridConfig::default() };
        let mut p = ModePolicy::new(config, RoomMode::Auto, true);
        let mut now = T0;
        let id = |p: &ModePolicy| p.migrating().map_or(0, |m| m.id);
        for s in steps {
            let _ = match s {
                Step::Join(i, c) => p.request_join(now, &name(i.into()), c).1,
                Step::Leave(i) => p.leave(now, &name(i.into())),
                Step::Cancel(i) => { p.cancel_join(&name(i.into())); Vec::new() }
                Step::Ack(i) => { let x = id(&p); p.ack(&name(i.into()), x); Vec::new() }
                Step::Ready(i) => { let x = id(&p); p.ready(now, &name(i.into()), x) }
                Step::Failed(i) => { let x = id(&p); p.failed(now, &name(i.into()), x) }
                Step::Health(h) => p.set_sfu_health(now, h),
                Step::Setting(k) => {
                    let m = [RoomMode::Auto, RoomMode::P2p, RoomMode::Sfu][usize::from(k)];
                    p.set_setting(now, m).unwrap_or_default()
                }
                Step::RequireSfu(i) => p.require_sfu(now, Some(&name(i.into()))).unwrap_or_default(),
                Step::Advance(ms) => {
                    now += u64::from(ms);
                    match p.poll_timeout() {
                        Some(t) if t <= now => p.handle_timeout(now),
                        _ => Vec::new(),
                    }
                }
            };
            proptest::prop_assert!(p.queued() == 0 || p.migrating().is_some());
            if p.migrating().is_some() {
                proptest::prop_assert!(p.poll_timeout().is_some());
            }
            proptest::prop_assert!(p.members() <= 12);
        }
        // Let every timer run out (bounded): queued joins are admitted by then.
        for _ in 0..20 {
            now += 31_000;
            p.handle_timeout(now);
        }
        proptest::prop_assert_eq!(p.queued(), 0);
    }
}
