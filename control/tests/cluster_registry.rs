//! The cluster's Redis scripts against a real `redis-server`: the placement race (one home per
//! room whatever the interleaving, a Redis connection killed mid-burst), failover after a
//! node stops renewing (detection time printed), fencing of a node that comes back after its
//! lease ended, and a restarted node (new boot) not resurrecting its old claims.

mod cluster_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_support::{draft, Redis};
use sluice_control::cluster::{Cluster, ClusterError, Placement};

fn cluster(redis: &Redis, id: &str, lease_ms: u64) -> Arc<Cluster> {
    let d = draft(redis, id, &format!("http://{id}.invalid:1"), lease_ms);
    Cluster::new(d.finish().unwrap().unwrap()).unwrap()
}

fn nothing(_: &[String]) {}

async fn registered(c: &Arc<Cluster>) -> tokio::task::JoinHandle<()> {
    let task = tokio::spawn(Arc::clone(c).run(nothing));
    let started = Instant::now();
    while !c.is_serving() {
        assert!(started.elapsed() < Duration::from_secs(5), "not registered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task
}

fn home_of(p: &Placement, me: &str) -> String {
    match p {
        Placement::Local => me.to_owned(),
        Placement::Remote(h) => h.node.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_race_gives_one_home_per_room() {
    let redis = Redis::start();
    let nodes: Vec<Arc<Cluster>> = ["a", "b", "c"]
        .iter()
        .map(|id| cluster(&redis, id, 3000))
        .collect();
    let mut tasks = Vec::new();
    for n in &nodes {
        tasks.push(registered(n).await);
    }
    let (rounds, burst) = (200usize, 30usize);
    let failed = Arc::new(AtomicUsize::new(0));
    let mut answers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seed: u64 = 0x5eed_1234_abcd;
    let started = Instant::now();
    for round in 0..rounds {
        let mut set = tokio::task::JoinSet::new();
        for j in 0..burst {
            // 3 rooms per burst, each asked for by 10 joins landing on random nodes.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let room = format!("r{round}-{}", j % 3);
            let node = Arc::clone(&nodes[(seed % 3) as usize]);
            let delay = Duration::from_micros(seed % 20_000);
            let failed = Arc::clone(&failed);
            set.spawn(async move {
                tokio::time::sleep(delay).await;
                match node.place(&room).await {
                    Ok(p) => Some((room, home_of(&p, node.node_id()))),
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                }
            });
        }
        if round == rounds / 2 {
            // Every client connection killed mid-burst: the managers reconnect.
            redis.cli(&["CLIENT", "KILL", "TYPE", "normal"]);
        }
        while let Some(r) = set.join_next().await {
            if let Some((room, home)) = r.unwrap() {
                answers.entry(room).or_default().push(home);
            }
        }
    }
    let elapsed = started.elapsed();
    let mut placed = 0;
    for (room, homes) in &answers {
        assert!(homes.iter().all(|h| h == &homes[0]), "{room}: {homes:?}");
        assert_eq!(
            redis.cli(&["HGET", &format!("sl:room:{room}"), "home"]),
            homes[0]
        );
        assert_eq!(
            redis.cli(&["HGET", &format!("sl:room:{room}"), "epoch"]),
            "1"
        );
        placed += 1;
    }
    let spread: BTreeMap<&str, usize> = answers.values().fold(BTreeMap::new(), |mut m, h| {
        *m.entry(h[0].as_str()).or_default() += 1;
        m
    });
    println!(
        "placement race: {} joins in {rounds} bursts of {burst}, {placed} rooms, one home each, \
         {} answers unavailable (connection kill), homes per node {spread:?}, {elapsed:?}",
        rounds * burst,
        failed.load(Ordering::Relaxed)
    );
    assert_eq!(placed, rounds * 3);
    assert!(
        failed.load(Ordering::Relaxed) < burst,
        "a kill costs one burst at most"
    );
    for t in tasks {
        t.abort();
    }
}

#[tokio::test]
async fn a_dead_nodes_rooms_are_placed_again_and_it_comes_back_fenced() {
    let redis = Redis::start();
    let lease = 1500;
    let a = cluster(&redis, "a", lease);
    let b = cluster(&redis, "b", lease);
    let ta = registered(&a).await;
    let _tb = registered(&b).await;
    assert_eq!(a.place("r").await.unwrap(), Placement::Local);
    // q: a room of A's that nobody joins while A is away (s on B first: equal reservations,
    // so A keeps q).
    assert_eq!(b.place("s").await.unwrap(), Placement::Local);
    assert_eq!(a.place("q").await.unwrap(), Placement::Local);
    assert!(
        matches!(b.place("r").await.unwrap(), Placement::Remote(h) if h.node == "a" && h.epoch == 1)
    );

    // "kill -9" A: its lease is no longer renewed.
    ta.abort();
    let killed = Instant::now();
    let detected = loop {
        match b.place("r").await.unwrap() {
            Placement::Local => break killed.elapsed(),
            Placement::Remote(h) => assert_eq!(h.node, "a"),
        }
        assert!(killed.elapsed() < Duration::from_secs(10), "no failover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "failover: lease {lease} ms, room placed again on b {detected:?} after a stopped renewing"
    );
    assert!(
        detected <= Duration::from_millis(lease + 1000),
        "{detected:?}"
    );
    assert_eq!(redis.cli(&["HGET", "sl:room:r", "epoch"]), "2");
    // A (frozen, not dead) renews again: the lease is lost, so it fences itself.
    let lost = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let l = Arc::clone(&lost);
    let on_lost = move |rooms: &[String]| {
        l.lock().unwrap().extend_from_slice(rooms);
    };
    assert!(
        a.is_home("r"),
        "A still believes it is home before it renews"
    );
    assert!(
        !a.beat(true, &on_lost).await,
        "renewal after expiry must fail"
    );
    assert!(!a.is_serving(), "fenced: no placements");
    assert!(
        matches!(a.place("new").await, Err(ClusterError::Fenced)),
        "a fenced node places nothing"
    );
    // It registers again (new boot), re-claims what it hosts: B holds r (epoch 2), so A gives
    // r up — never two homes.
    assert!(a.beat(false, &on_lost).await);
    assert_eq!(*lost.lock().unwrap(), vec!["r".to_owned()]);
    assert!(!a.is_home("r") && a.is_serving());
    assert!(
        matches!(a.place("r").await.unwrap(), Placement::Remote(h) if h.node == "b" && h.epoch == 2)
    );
    assert_eq!(redis.cli(&["HGET", "sl:room:r", "home"]), "b");
    // q nobody took: A keeps it, under its new boot and a higher epoch.
    assert!(a.is_home("q"));
    assert_eq!(redis.cli(&["HGET", "sl:room:q", "home"]), "a");
    assert_eq!(redis.cli(&["HGET", "sl:room:q", "epoch"]), "2");
    assert!(
        matches!(b.place("q").await.unwrap(), Placement::Remote(h) if h.node == "a" && h.epoch == 2)
    );
}

#[tokio::test]
async fn a_restarted_node_does_not_resurrect_old_claims() {
    let redis = Redis::start();
    let a = cluster(&redis, "a", 1000);
    let ta = registered(&a).await;
    assert_eq!(a.place("r").await.unwrap(), Placement::Local);
    ta.abort();
    // Same id, new process (new boot), before or after the old lease ran out.
    let a2 = cluster(&redis, "a", 1000);
    let started = Instant::now();
    let _t2 = registered(&a2).await;
    println!("restart: re-registered after {:?}", started.elapsed());
    // The old claim (old boot) is dead: the room is claimed again, epoch 2.
    assert_eq!(a2.place("r").await.unwrap(), Placement::Local);
    assert_eq!(redis.cli(&["HGET", "sl:room:r", "epoch"]), "2");
}

#[tokio::test]
async fn released_rooms_and_swept_nodes_leave_nothing_behind() {
    let redis = Redis::start();
    let a = cluster(&redis, "a", 1000);
    let b = cluster(&redis, "b", 1000);
    let ta = registered(&a).await;
    let _tb = registered(&b).await;
    // Placement spreads by load (reservations count): some land on b.
    let mut mine = Vec::new();
    for i in 0..50 {
        if a.place(&format!("x{i}")).await.unwrap() == Placement::Local {
            mine.push(format!("x{i}"));
        }
    }
    assert!(mine.len() >= 2 && mine.len() < 50, "{mine:?}");
    a.release(&mine[0]).await;
    assert_eq!(
        redis.cli(&["HGET", &format!("sl:room:{}", mine[0]), "home"]),
        ""
    );
    assert_ne!(
        redis.cli(&["TTL", &format!("sl:room:{}", mine[0])]),
        "-1",
        "a released room expires"
    );
    assert_eq!(
        redis.cli(&["SCARD", "sl:node:a:rooms"]),
        (mine.len() - 1).to_string()
    );
    ta.abort();
    let started = Instant::now();
    while !redis.cli(&["ZSCORE", "sl:nodes", "a"]).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(5), "a not swept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(redis.cli(&["EXISTS", "sl:node:a", "sl:node:a:rooms"]), "0");
    assert_eq!(
        redis.cli(&["HGET", &format!("sl:room:{}", mine[1]), "home"]),
        ""
    );
    // b counts the rooms once its sweep script has returned: after the keys are gone.
    let want = mine.len() as u64 - 1;
    while b.metrics.rooms_unhomed.load(Ordering::Relaxed) < want {
        assert!(started.elapsed() < Duration::from_secs(5), "b's count");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(b.metrics.rooms_unhomed.load(Ordering::Relaxed), want);
}

/// Redis killed and started empty under a node that hosts more rooms than one re-claim script
/// takes (256): every room is claimed again, batch by batch, at a higher epoch than the node's
/// own, and counted.
#[tokio::test]
async fn a_node_re_claims_all_its_rooms_in_batches_after_redis_came_back_empty() {
    let mut redis = Redis::start();
    let a = cluster(&redis, "a", 1000);
    let task = registered(&a).await;
    let rooms = 600;
    for i in 0..rooms {
        assert_eq!(a.place(&format!("b{i}")).await.unwrap(), Placement::Local);
    }
    task.abort();
    redis.stop();
    redis.restart();
    let lost = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let l = Arc::clone(&lost);
    let on_lost = move |r: &[String]| l.lock().unwrap().extend_from_slice(r);
    // The renewal fails (connection gone, then the lease gone), the node registers again and
    // re-claims: bounded number of beats.
    let started = Instant::now();
    let mut registered = true;
    loop {
        registered = a.beat(registered, &on_lost).await;
        let fenced = a.metrics.fenced.load(Ordering::Relaxed);
        if registered && a.is_serving() && fenced == 1 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "not back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "re-claim: {rooms} rooms back on a {:?} after Redis came back empty",
        started.elapsed()
    );
    assert!(lost.lock().unwrap().is_empty());
    assert_eq!(redis.cli(&["SCARD", "sl:node:a:rooms"]), rooms.to_string());
    for i in [0, 255, 256, 511, 599] {
        assert_eq!(redis.cli(&["HGET", &format!("sl:room:b{i}"), "home"]), "a");
        assert_eq!(redis.cli(&["HGET", &format!("sl:room:b{i}"), "epoch"]), "2");
    }
    assert_eq!(
        a.metrics.rooms_reasserted.load(Ordering::Relaxed),
        rooms as u64
    );
    assert_eq!(a.home_count(), rooms);
}
