//! Hub unit tests of sessions: away, resume and replay, slow consumers.

use super::*;

#[tokio::test(start_paused = true)]
async fn lost_connection_is_away_then_times_out() {
    let hub = hub_with(config());
    let mut a = Peer::joined(&hub, "r", "a");
    let mut b = Peer::joined(&hub, "r", "b");
    a.recv();
    b.finish(None);
    tokio::time::sleep(Duration::from_secs(19)).await;
    assert!(
        a.recv().is_empty(),
        "nobody is told during the resume window"
    );
    assert!(!hub.peers("r").unwrap()[1].connected);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let left = a.recv();
    assert_eq!(left[0]["type"], "user-left");
    assert_eq!(left[0]["reason"], "timeout");
    // 4000 from the client (it stopped hearing us) is also "away".
    let mut c = Peer::joined(&hub, "r", "c");
    a.recv();
    c.finish(Some(close::HEARTBEAT_TIMEOUT));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(a.recv().is_empty());
}

#[tokio::test(start_paused = true)]
async fn resume_replays_missed_messages_in_order_with_original_seq() {
    let hub = hub_with(config());
    let mut a = Peer::joined(&hub, "r", "a");
    let mut b = Peer::joined(&hub, "r", "b");
    a.recv();
    let (sid, token) = {
        let st = hub.inner.sessions.get(&b.session_id()).unwrap();
        (st.id.to_string(), st.resume_token.to_string())
    };
    // b saw seq 1 (room-info); then the line drops.
    b.finish(None);
    for i in 0..5 {
        a.send(json!({"type":"message","to":"b","data":i,"id":i}));
    }
    assert_eq!(
        a.recv_types(),
        ["ack"; 5],
        "messages to an away peer are accepted"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut b2 = Peer::new(&hub);
    b2.send(json!({"type":"resume","sessionId":sid,"resumeToken":token,"lastSeq":1}));
    let got = b2.recv();
    assert_eq!(got[0]["type"], "resumed");
    assert_eq!(got[0]["replayed"], 5);
    let data: Vec<i64> = got[1..]
        .iter()
        .map(|m| m["data"].as_i64().unwrap())
        .collect();
    assert_eq!(data, [0, 1, 2, 3, 4]);
    let seqs: Vec<u64> = got[1..]
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 3, 4, 5, 6]);
    assert_eq!(b2.session_id(), sid);
    // Live again, and nobody was told anything.
    a.send(json!({"type":"message","to":"b","data":"live"}));
    assert_eq!(b2.recv()[0]["seq"], 7);
    assert!(a.recv().is_empty());
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(a.recv().is_empty(), "the resume cancelled the timeout");
    assert_eq!(hub.peers("r").unwrap().len(), 2);
}

#[tokio::test]
async fn resume_of_an_attached_session_takes_it_over_with_4409() {
    let hub = hub_with(config());
    let b = Peer::joined(&hub, "r", "b");
    let sess = hub.inner.sessions.get(&b.session_id()).unwrap();
    let mut b2 = Peer::new(&hub);
    b2.send(json!({"type":"resume","sessionId":&*sess.id,"resumeToken":sess.resume_token.to_string(),"lastSeq":1}));
    assert_eq!(b2.recv_types(), ["resumed"]);
    let req = b.close_request().expect("old connection closed");
    assert_eq!(req.code, close::REPLACED);
    assert_eq!(req.fate, Fate::Detached);
    let mut b = b;
    b.finish(None);
    assert_eq!(
        hub.peers("r").unwrap().len(),
        1,
        "the old connection ending does not end the session"
    );
    assert!(hub.peers("r").unwrap()[0].connected);
}

#[tokio::test]
async fn replay_overflow_fails_resume_never_a_gap() {
    let mut cfg = config();
    cfg.replay_buffer_messages = 4;
    let hub = hub_with(cfg);
    let mut a = Peer::joined(&hub, "r", "a");
    let mut b = Peer::joined(&hub, "r", "b");
    a.recv();
    let sess = hub.inner.sessions.get(&b.session_id()).unwrap();
    b.finish(None);
    for i in 0..10 {
        a.send(json!({"type":"message","to":"b","data":i}));
    }
    let mut b2 = Peer::new(&hub);
    assert_eq!(
        b2.error_code(json!({"type":"resume","sessionId":&*sess.id,"resumeToken":sess.resume_token.to_string(),"lastSeq":1})),
        "resume-failed"
    );
    let mut b3 = Peer::new(&hub);
    b3.send(json!({"type":"resume","sessionId":&*sess.id,"resumeToken":sess.resume_token.to_string(),"lastSeq":7}));
    let got = b3.recv();
    assert_eq!(got[0]["type"], "resumed");
    assert_eq!(got.len(), 5, "seq 8..=11 are replayed");
}

#[tokio::test]
async fn cumulative_ack_frees_the_buffer() {
    let hub = hub_with(config());
    let mut a = Peer::joined(&hub, "r", "a");
    for _ in 0..4 {
        a.send(json!({"type":"ping"}));
    }
    a.recv();
    a.send(json!({"type":"ack","seq":3}));
    let sess = hub.inner.sessions.get(&a.session_id()).unwrap();
    assert_eq!(sess.lock().buffered().0, 2);
    assert!(sess.lock().replay_after(2).is_none());
}

#[tokio::test]
async fn rejoin_of_an_away_identity_replaces_it() {
    let hub = hub_with(config());
    let mut a = Peer::joined(&hub, "r", "a");
    let mut b = Peer::joined(&hub, "r", "b");
    a.recv();
    b.finish(None);
    let mut b2 = Peer::new(&hub);
    b2.send(json!({"type":"join","roomId":"r","userId":"b"}));
    let info = b2.recv();
    assert_eq!(info[0]["type"], "room-info");
    assert_eq!(info[0]["users"], json!(["a"]));
    let seen = a.recv();
    assert_eq!(seen[0]["type"], "user-left");
    assert_eq!(seen[0]["reason"], "replaced");
    assert_eq!(seen[1]["type"], "user-joined");
    assert_eq!(seen[1]["userId"], "b");
    assert_eq!(hub.peers("r").unwrap().len(), 2);
}

#[tokio::test]
async fn slow_consumer_is_closed_and_can_resume() {
    let mut cfg = config();
    cfg.max_message_bytes = 1024;
    // Twelve kept frames of this test's size (each counts the 512 bytes it
    // holds, `replay_frame_capacity`).
    cfg.replay_buffer_bytes = 12 * 512;
    cfg.outbound_queue_bytes = 8192;
    // The stall time of a queue over half full.
    cfg.heartbeat_timeout = std::time::Duration::from_millis(30);
    cfg.validate().unwrap();
    let hub = hub_with(cfg);
    let mut a = Peer::joined(&hub, "r", "a");
    let b = Peer::joined(&hub, "r", "b");
    a.recv();
    let message = |i: usize| json!({"type":"message","to":"b","data":format!("{i:0>64}")});
    // b reads nothing: past half its queue, a is refused (the sender pays)...
    let mut accepted = 0;
    loop {
        let code = a.error_code_or_none(message(accepted));
        if code.as_deref() == Some("rate-limited") {
            break;
        }
        assert_eq!(code, None);
        accepted += 1;
    }
    assert!(
        b.close_request().is_none(),
        "b keeps its connection for now"
    );
    // ...until b's queue has not moved for the stall time: then b is closed as
    // a slow consumer, and what a sends waits in b's replay buffer.
    std::thread::sleep(std::time::Duration::from_millis(40));
    for i in 0..20 {
        a.send(message(1000 + i));
    }
    let req = b.close_request().expect("closed as slow consumer");
    assert_eq!((req.code, req.fate), (close::POLICY, Fate::Away));
    let sess = hub.inner.sessions.get(&b.session_id()).unwrap();
    let mut b = b;
    b.finish(None);
    assert!(sess.lock().is_away());
    let resume = |last: u64| json!({"type":"resume","sessionId":&*sess.id,"resumeToken":sess.resume_token.to_string(),"lastSeq":last});
    // The replay buffer (twelve frames) no longer covers seq 2: refused, never a gap.
    let mut b2 = Peer::new(&hub);
    assert_eq!(b2.error_code(resume(1)), "resume-failed");
    // The last ten come back in order, the 20 sent after the close among them.
    let newest = 2 + accepted as u64 + 20 - 1;
    let mut b3 = Peer::new(&hub);
    b3.send(resume(newest - 10));
    let got = b3.recv();
    assert_eq!(got[0]["type"], "resumed");
    let seqs: Vec<u64> = got[1..]
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (newest - 9..=newest).collect::<Vec<u64>>());
    assert_eq!(got.last().unwrap()["data"], format!("{:0>64}", 1019));
}

#[tokio::test]
async fn a_room_broadcast_waits_for_a_busy_receiver_all_or_nothing() {
    let mut cfg = config();
    cfg.max_message_bytes = 1024;
    cfg.replay_buffer_bytes = 3000;
    cfg.outbound_queue_bytes = 4096;
    cfg.validate().unwrap();
    let hub = hub_with(cfg);
    let mut a = Peer::joined(&hub, "r", "a");
    let b = Peer::joined(&hub, "r", "b");
    let mut c = Peer::joined(&hub, "r", "c");
    a.recv();
    c.recv();
    let mut accepted = 0;
    let refusal = loop {
        a.send(json!({"type":"message","id":accepted,"data":format!("{accepted:0>64}")}));
        let got = a.recv();
        if let Some(e) = got.iter().find(|m| m["type"] == "error") {
            break e.clone();
        }
        accepted += 1;
        // c reads along; b does not.
        assert_eq!(c.recv().len(), 1);
    };
    assert_eq!(refusal["code"], "rate-limited");
    assert!(
        refusal["message"]
            .as_str()
            .unwrap()
            .contains("not sent: b "),
        "{refusal}"
    );
    assert!(
        c.recv().is_empty(),
        "nothing of the refused broadcast reached c"
    );
    assert!(b.close_request().is_none());
    assert!(accepted > 5);
}

#[test]
fn config_rejects_a_replay_that_could_not_be_queued() {
    let cfg = ServerConfig {
        replay_buffer_bytes: 1 << 20,
        outbound_queue_bytes: 1 << 20,
        ..ServerConfig::default()
    };
    assert_eq!(cfg.validate().unwrap_err().code(), "config");
    ServerConfig::default().validate().unwrap();
}

/// Counts how often sessions said they have frames to copy.
#[derive(Debug, Default)]
struct CountingMirror(std::sync::atomic::AtomicUsize);

impl ReplayMirror for CountingMirror {
    fn frames_buffered(&self, _: &std::sync::Weak<session::Session>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn the_mirror_is_told_once_and_takes_only_frames_still_buffered_and_not_taken() {
    let bounds = session::ReplayBounds::new(100, 1 << 20);
    let outbox = Arc::new(crate::hub::outbox::Outbox::new(1 << 20));
    let attached = session::Attached { conn_id: 1, outbox };
    let s = Arc::new(session::Session::new(
        "s".into(),
        crate::hub::resume_token::ResumeToken::random(),
        bounds,
        attached,
    ));
    s.deliver("{}"); // before the mirror: never copied
    let mirror = Arc::new(CountingMirror::default());
    s.lock().set_mirror(Arc::downgrade(&s), mirror.clone());
    let told = || mirror.0.load(Ordering::Relaxed);
    let seqs = |frames: Vec<(u64, crate::protocol::Frame)>| {
        frames.into_iter().map(|(q, _)| q).collect::<Vec<_>>()
    };
    let take = |below| {
        let t = s.take_unmirrored(below);
        (t.first_seq, seqs(t.frames), t.more_from)
    };
    for _ in 0..3 {
        s.deliver("{\"n\":1}");
    }
    assert_eq!(told(), 1, "told once for the three");
    assert_eq!(take(u64::MAX), (1, vec![2, 3, 4], None));
    assert_eq!(take(u64::MAX).1.len(), 0, "taken frames count as copied");
    // Acknowledged before the mirror came for them: never copied.
    s.deliver("{}");
    s.deliver("{}");
    assert_eq!(told(), 2);
    s.lock().ack(5);
    s.deliver("{}");
    assert_eq!(told(), 2, "not told again before it took them");
    assert_eq!(take(u64::MAX), (6, vec![6, 7], None));
    // A pass while busy takes the frames below its mark only; the rest wait
    // (the mirror keeps the session: it is not told again) for the next pass.
    for _ in 0..3 {
        s.deliver("{}");
    }
    assert_eq!(told(), 3);
    assert_eq!(take(0), (6, vec![], Some(11)), "a first pass only marks");
    assert_eq!(take(10), (6, vec![8, 9], Some(11)));
    s.deliver("{}");
    assert_eq!(told(), 3, "still waiting: not told again");
    s.lock().ack(10);
    assert_eq!(
        take(11),
        (11, vec![], Some(12)),
        "acknowledged before its pass"
    );
    s.lock().ack(11);
    assert_eq!(take(12), (12, vec![], None));
    s.deliver("{}");
    assert_eq!(told(), 4, "everything was copied: told again");
    // A resync writes everything: nothing is left to copy.
    assert_eq!(s.lock().frames_for_resync().len(), 1);
    assert_eq!(take(u64::MAX), (12, vec![], None));
}
