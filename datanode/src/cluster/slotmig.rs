//! Atomic slot migration jobs (Valkey 9's `CLUSTER MIGRATESLOTS`) as pure
//! state machines: `(job, event, now) -> effects`. The source runs an
//! export job and the target an import job for the same named set of slot
//! ranges; they talk through `CLUSTER SYNCSLOTS` control messages on the
//! connection the source opened. The shell (not here) owns the socket,
//! streams the snapshot and the writes made meanwhile, hides the imported
//! keys, and carries out the effects. The states, their names and the
//! failure messages are Valkey 9.0's (see `docs/`), so `CLUSTER
//! GETSLOTMIGRATIONS` reads the same.

/// Inclusive slot ranges, in the order given.
pub type Ranges = Vec<(u16, u16)>;

/// Timing the jobs depend on (ms).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How long the source pauses writes for the handoff:
    /// `cluster-manual-failover-timeout` × 2.
    pub pause_ms: i64,
    /// At least this much pause is left when the source grants the
    /// failover (Valkey's CLUSTER_OPERATION_TIMEOUT).
    pub grant_ms: i64,
    /// No message from the other side for this long fails the job
    /// (`repl-timeout`).
    pub timeout_ms: i64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            pause_ms: 10_000,
            grant_ms: 2_000,
            timeout_ms: 60_000,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Import,
    Export,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Import => "IMPORT",
            Op::Export => "EXPORT",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    // Source.
    Connecting,
    WaitingToSnapshot,
    Snapshotting,
    Replicating,
    FailoverPaused,
    /// Source: granted, waiting to see the target's claim.
    FailoverGranted,
    // Target.
    WaitingForAck,
    ReceivingSnapshot,
    WaitingForPaused,
    FailoverRequested,
    // Both.
    Success,
    Cancelled,
    Failed,
}

impl Phase {
    /// Valkey's names, as CLUSTER GETSLOTMIGRATIONS shows them.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::WaitingToSnapshot => "waiting-to-snapshot",
            Phase::Snapshotting => "snapshotting",
            Phase::Replicating => "replicating",
            Phase::FailoverPaused => "failover-paused",
            Phase::FailoverGranted => "failover-granted",
            Phase::WaitingForAck => "waiting-for-ack",
            Phase::ReceivingSnapshot => "receiving-snapshot",
            Phase::WaitingForPaused => "waiting-for-paused",
            Phase::FailoverRequested => "failover-requested",
            Phase::Success => "success",
            Phase::Cancelled => "cancelled",
            Phase::Failed => "failed",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Phase::Success | Phase::Cancelled | Phase::Failed)
    }
}

/// Control messages (`CLUSTER SYNCSLOTS <name>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    Ack,
    SnapshotEof,
    RequestPause,
    Paused,
    RequestFailover,
    FailoverGranted,
}

impl Msg {
    pub fn name(self) -> &'static str {
        match self {
            Msg::Ack => "ACK",
            Msg::SnapshotEof => "SNAPSHOT-EOF",
            Msg::RequestPause => "REQUEST-PAUSE",
            Msg::Paused => "PAUSED",
            Msg::RequestFailover => "REQUEST-FAILOVER",
            Msg::FailoverGranted => "FAILOVER-GRANTED",
        }
    }

    pub fn parse(s: &[u8]) -> Option<Msg> {
        [
            Msg::Ack,
            Msg::SnapshotEof,
            Msg::RequestPause,
            Msg::Paused,
            Msg::RequestFailover,
            Msg::FailoverGranted,
        ]
        .into_iter()
        .find(|m| m.name().as_bytes().eq_ignore_ascii_case(s))
    }
}

/// What happened to a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Source: the target accepted (Ok) or refused (Err, its reply) the
    /// handshake.
    Established(Result<(), String>),
    /// Source: no connection (or AUTH) to the target; the message.
    ConnectFailed(String),
    /// Source: every snapshot byte is queued behind what came before.
    SnapshotDone,
    Received(Msg),
    ConnectionLost,
    /// `CLUSTER CANCELSLOTMIGRATIONS` (source).
    Cancel,
    /// The cluster view changed: who owns the job's slots now.
    Owners {
        all_source: bool,
        all_target: bool,
    },
    /// Once in a while (the cluster cron).
    Tick,
    /// Something local went wrong (the data was flushed, a command
    /// failed): the job fails with this message.
    Abort(String),
}

/// What the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Source: start the snapshot of the job's slots, then the stream of
    /// writes made since its cut.
    StartSnapshot,
    Send(Msg),
    /// Source: hold client writes until then.
    PauseWrites {
        until: i64,
    },
    Unpause,
    /// Target: bump the config epoch, take the slots, show the imported
    /// keys, tell everyone.
    ClaimSlots,
    /// Delete the keys of the job's slots: the source's after the target
    /// took them, the target's hidden ones after a failure.
    DeleteSlotKeys,
    /// Close the job's connection.
    Close,
}

pub const LOST_WRITES: &str =
    "Unpaused before migration completed (migration may have succeeded with lost writes)";
pub const MSG_UNEXPECTED: &str = "Unexpected state machine transition";
pub const MSG_TIMEOUT: &str = "Timed out after too long with no interaction";
pub const MSG_LOST_TARGET: &str = "Connection lost to target. Check CLUSTER GETSLOTMIGRATIONS on the target node for more information.";
pub const MSG_LOST_SOURCE: &str = "Connection lost to source. Check CLUSTER GETSLOTMIGRATIONS on the source node for more information.";

#[derive(Clone, Debug)]
pub struct Job {
    /// 40 hex characters, the same on both sides.
    pub name: String,
    pub op: Op,
    pub ranges: Ranges,
    pub source: String,
    pub target: String,
    pub phase: Phase,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub last_ack_ms: i64,
    /// Why it failed ("" otherwise).
    pub message: String,
    /// Source: the end of the write pause in force, 0 for none.
    pub pause_until: i64,
}

impl Job {
    /// A source's job: connecting to the target.
    pub fn export(name: String, ranges: Ranges, source: String, target: String, now: i64) -> Job {
        Job::new(
            name,
            Op::Export,
            ranges,
            source,
            target,
            Phase::Connecting,
            now,
        )
    }

    /// A target's job, created by the source's handshake.
    pub fn import(name: String, ranges: Ranges, source: String, target: String, now: i64) -> Job {
        Job::new(
            name,
            Op::Import,
            ranges,
            source,
            target,
            Phase::WaitingForAck,
            now,
        )
    }

    fn new(
        name: String,
        op: Op,
        ranges: Ranges,
        source: String,
        target: String,
        phase: Phase,
        now: i64,
    ) -> Job {
        Job {
            name,
            op,
            ranges,
            source,
            target,
            phase,
            created_ms: now,
            updated_ms: now,
            last_ack_ms: now,
            message: String::new(),
            pause_until: 0,
        }
    }

    pub fn contains(&self, slot: u16) -> bool {
        self.ranges.iter().any(|&(a, b)| (a..=b).contains(&slot))
    }

    /// `0-9 20-29`, as Valkey prints the ranges.
    pub fn ranges_text(&self) -> String {
        self.ranges
            .iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn go(&mut self, p: Phase, now: i64) {
        self.phase = p;
        self.updated_ms = now;
    }

    /// Ends the job with `phase` (Failed or Cancelled) and what each side
    /// must undo: the source lifts its pause, the target deletes what it
    /// received (nobody saw it: the slots were never its own).
    fn end(&mut self, phase: Phase, message: &str, now: i64) -> Vec<Effect> {
        let mut fx = Vec::new();
        match self.op {
            Op::Export => {
                if self.pause_until != 0 {
                    self.pause_until = 0;
                    fx.push(Effect::Unpause);
                }
            }
            Op::Import => fx.push(Effect::DeleteSlotKeys),
        }
        fx.push(Effect::Close);
        self.message = message.to_string();
        self.go(phase, now);
        fx
    }

    /// Feeds one event; returns what the shell must do. A job that ended
    /// ignores everything.
    pub fn step(&mut self, ev: Event, now: i64, t: &Timing) -> Vec<Effect> {
        if self.phase.is_final() {
            return Vec::new();
        }
        if let Event::Received(_) = ev {
            self.last_ack_ms = now;
        }
        match self.op {
            Op::Export => self.step_export(ev, now, t),
            Op::Import => self.step_import(ev, now, t),
        }
    }

    fn step_export(&mut self, ev: Event, now: i64, t: &Timing) -> Vec<Effect> {
        use Phase::*;
        match (self.phase, ev) {
            (Connecting, Event::Established(Ok(()))) => {
                self.go(Snapshotting, now);
                vec![Effect::Send(Msg::Ack), Effect::StartSnapshot]
            }
            (Connecting, Event::ConnectFailed(msg)) => self.end(Failed, &msg, now),
            (Connecting, Event::Established(Err(e))) => self.end(
                Failed,
                &format!("Received error during handshake to target: {e}"),
                now,
            ),
            (Snapshotting, Event::SnapshotDone) => {
                self.go(Replicating, now);
                vec![Effect::Send(Msg::SnapshotEof)]
            }
            (_, Event::Received(Msg::Ack)) => Vec::new(),
            // The target has read the whole snapshot: stop the writes, and
            // mark in the stream where they stopped.
            (Replicating, Event::Received(Msg::RequestPause)) => {
                self.pause_until = now + t.pause_ms;
                self.go(FailoverPaused, now);
                vec![
                    Effect::PauseWrites {
                        until: self.pause_until,
                    },
                    Effect::Send(Msg::Paused),
                ]
            }
            (FailoverPaused, Event::Received(Msg::RequestFailover)) => {
                if now > self.pause_until {
                    return self.end(Failed, "Unpaused before failover completed", now);
                }
                self.pause_until = self.pause_until.max(now + t.grant_ms);
                self.go(FailoverGranted, now);
                vec![
                    Effect::PauseWrites {
                        until: self.pause_until,
                    },
                    Effect::Send(Msg::FailoverGranted),
                ]
            }
            // The target's claim reached us: the slots and their writes
            // are its own now.
            (
                FailoverGranted,
                Event::Owners {
                    all_target: true, ..
                },
            ) => {
                let late = now > self.pause_until;
                self.pause_until = 0;
                if late {
                    // The pause ran out first: writes may have gone in
                    // meanwhile and are lost with the slots (the case
                    // Valkey warns about).
                    self.message = LOST_WRITES.to_string();
                    self.go(Failed, now);
                } else {
                    self.go(Success, now);
                }
                vec![Effect::Unpause, Effect::DeleteSlotKeys, Effect::Close]
            }
            (FailoverGranted, Event::Owners { .. }) => Vec::new(),
            // Granted: the claim comes by gossip, not on this link. Nor can
            // it be cancelled any more: the target may own the slots
            // already, and writes let through now would be lost (Valkey
            // cancels here; the simulator found the lost writes).
            (FailoverGranted, Event::ConnectionLost | Event::Cancel | Event::Abort(_)) => {
                Vec::new()
            }
            (_, Event::Abort(msg)) => self.end(Failed, &msg, now),
            (
                _,
                Event::Owners {
                    all_source: false, ..
                },
            ) => self.end(Failed, "Slots are no longer owned by myself", now),
            (_, Event::Owners { .. }) => Vec::new(),
            (Connecting, Event::ConnectionLost) => {
                self.end(Failed, "Unable to connect to target node", now)
            }
            (_, Event::ConnectionLost) => self.end(Failed, MSG_LOST_TARGET, now),
            (_, Event::Cancel) => self.end(Cancelled, "", now),
            (FailoverPaused, Event::Tick) if now > self.pause_until => {
                self.end(Failed, "Timed out before streaming completed", now)
            }
            (FailoverGranted, Event::Tick) if now > self.pause_until => {
                self.end(Failed, LOST_WRITES, now)
            }
            (FailoverGranted, Event::Tick) => Vec::new(),
            (Connecting | Snapshotting, Event::Tick) => Vec::new(),
            (_, Event::Tick) if now - self.last_ack_ms > t.timeout_ms => {
                self.end(Failed, MSG_TIMEOUT, now)
            }
            (_, Event::Tick) => Vec::new(),
            _ => self.end(Failed, MSG_UNEXPECTED, now),
        }
    }

    fn step_import(&mut self, ev: Event, now: i64, t: &Timing) -> Vec<Effect> {
        use Phase::*;
        match (self.phase, ev) {
            (WaitingForAck, Event::Received(Msg::Ack)) => {
                self.go(ReceivingSnapshot, now);
                Vec::new()
            }
            (_, Event::Received(Msg::Ack)) => Vec::new(),
            (ReceivingSnapshot, Event::Received(Msg::SnapshotEof)) => {
                self.go(WaitingForPaused, now);
                vec![Effect::Send(Msg::RequestPause)]
            }
            // Everything written before the pause has been applied.
            (WaitingForPaused, Event::Received(Msg::Paused)) => {
                self.go(FailoverRequested, now);
                vec![Effect::Send(Msg::RequestFailover)]
            }
            (FailoverRequested, Event::Received(Msg::FailoverGranted)) => {
                self.go(Success, now);
                vec![Effect::ClaimSlots, Effect::Close]
            }
            (
                _,
                Event::Owners {
                    all_source: false, ..
                },
            ) => self.end(Failed, "Slots are no longer owned by source node", now),
            (_, Event::Owners { .. }) => Vec::new(),
            (_, Event::ConnectionLost) => self.end(Failed, MSG_LOST_SOURCE, now),
            (_, Event::Abort(msg)) => self.end(Failed, &msg, now),
            (_, Event::Tick) if now - self.last_ack_ms > t.timeout_ms => {
                self.end(Failed, MSG_TIMEOUT, now)
            }
            (_, Event::Tick) => Vec::new(),
            _ => self.end(Failed, MSG_UNEXPECTED, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(now: i64) -> (Job, Job) {
        let n = "a".repeat(40);
        let (s, t) = ("S".repeat(40), "T".repeat(40));
        (
            Job::export(n.clone(), vec![(0, 9), (20, 29)], s.clone(), t.clone(), now),
            Job::import(n, vec![(0, 9), (20, 29)], s, t, now),
        )
    }

    #[test]
    fn the_happy_path_hands_the_slots_over() {
        let t = Timing::default();
        let (mut src, mut dst) = (pair(0).0, pair(0).1);
        assert_eq!(
            src.step(Event::Established(Ok(())), 1, &t),
            [Effect::Send(Msg::Ack), Effect::StartSnapshot]
        );
        assert!(dst.step(Event::Received(Msg::Ack), 2, &t).is_empty());
        assert_eq!(dst.phase.name(), "receiving-snapshot");
        assert_eq!(
            src.step(Event::SnapshotDone, 3, &t),
            [Effect::Send(Msg::SnapshotEof)]
        );
        assert_eq!(
            dst.step(Event::Received(Msg::SnapshotEof), 4, &t),
            [Effect::Send(Msg::RequestPause)]
        );
        assert_eq!(
            src.step(Event::Received(Msg::RequestPause), 5, &t),
            [
                Effect::PauseWrites { until: 10_005 },
                Effect::Send(Msg::Paused)
            ]
        );
        assert_eq!(
            dst.step(Event::Received(Msg::Paused), 6, &t),
            [Effect::Send(Msg::RequestFailover)]
        );
        assert_eq!(
            src.step(Event::Received(Msg::RequestFailover), 7, &t),
            [
                Effect::PauseWrites { until: 10_005 },
                Effect::Send(Msg::FailoverGranted)
            ]
        );
        assert_eq!(
            dst.step(Event::Received(Msg::FailoverGranted), 8, &t),
            [Effect::ClaimSlots, Effect::Close]
        );
        let owners = Event::Owners {
            all_source: false,
            all_target: true,
        };
        assert_eq!(
            src.step(owners, 9, &t),
            [Effect::Unpause, Effect::DeleteSlotKeys, Effect::Close]
        );
        assert_eq!((src.phase, dst.phase), (Phase::Success, Phase::Success));
        assert_eq!(src.ranges_text(), "0-9 20-29");
    }

    #[test]
    fn failures_undo_each_side() {
        let t = Timing::default();
        let (mut src, mut dst) = pair(0);
        src.step(Event::Established(Ok(())), 1, &t);
        dst.step(Event::Received(Msg::Ack), 1, &t);
        src.step(Event::SnapshotDone, 2, &t);
        src.step(Event::Received(Msg::RequestPause), 3, &t);
        // Cancelled while paused: the pause ends.
        assert_eq!(
            src.step(Event::Cancel, 4, &t),
            [Effect::Unpause, Effect::Close]
        );
        assert_eq!((src.phase.name(), src.message.as_str()), ("cancelled", ""));
        // The target loses the link: it deletes what it received.
        assert_eq!(
            dst.step(Event::ConnectionLost, 5, &t),
            [Effect::DeleteSlotKeys, Effect::Close]
        );
        assert_eq!(dst.message, MSG_LOST_SOURCE);
        // A message out of order fails a job.
        let (_, mut d2) = pair(0);
        assert_eq!(
            d2.step(Event::Received(Msg::Paused), 1, &t),
            [Effect::DeleteSlotKeys, Effect::Close]
        );
        assert_eq!(d2.message, MSG_UNEXPECTED);
        // Silence fails it after the timeout.
        let (_, mut d3) = pair(0);
        d3.step(Event::Received(Msg::Ack), 1, &t);
        assert!(d3.step(Event::Tick, 60_001, &t).is_empty());
        assert_eq!(d3.step(Event::Tick, 60_002, &t).len(), 2);
        assert_eq!(d3.message, MSG_TIMEOUT);
        // A refused handshake.
        let (mut s2, _) = pair(0);
        s2.step(Event::Established(Err("ERR no".into())), 1, &t);
        assert_eq!(
            s2.message,
            "Received error during handshake to target: ERR no"
        );
    }

    #[test]
    fn messages_parse_by_name() {
        assert_eq!(Msg::parse(b"request-pause"), Some(Msg::RequestPause));
        assert_eq!(Msg::parse(b"FAILOVER-GRANTED"), Some(Msg::FailoverGranted));
        assert_eq!(Msg::parse(b"nope"), None);
    }
}
