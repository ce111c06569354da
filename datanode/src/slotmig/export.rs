//! The source's side of a slot migration: connects to the target, hands it
//! a snapshot of the slots and then the writes made since the snapshot's
//! cut, and carries out its job's decisions (pause, grant, clean up).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedReceiver;

use super::feed::{FeedError, Filter};
use crate::cluster::slotmig::{Effect, Event, Msg, Timing};
use crate::keyspace::now_ms;
use crate::replication::backlog::ReadError;
use crate::server::Shared;

/// Backlog bytes read per turn.
const READ_CHUNK: usize = 256 * 1024;

/// Backlog reader ids for exports: far above client ids.
fn reader_id(seq: u64) -> u64 {
    (1u64 << 62) | seq
}

/// Starts an export job's task; `ctl` reaches it from CANCELSLOTMIGRATIONS.
pub fn spawn(srv: Arc<Shared>, name: String, addr: (String, u16), ctl: UnboundedReceiver<Event>) {
    tokio::spawn(async move {
        run(srv, name, addr, ctl).await;
    });
}

/// One snapshot chunk, the keys it holds and the budget it took; None at
/// the end.
type Chunk = Option<(Vec<u8>, usize, u32)>;

/// Snapshot bytes (in KB) encoded but not yet sent. It bounds the source's
/// extra memory, and the few buffers in flight are reused.
const IN_FLIGHT_KB: u32 = 8 * 1024;

struct Export {
    srv: Arc<Shared>,
    name: String,
    t: Timing,
    slots: Arc<Vec<bool>>,
    ranges: Vec<(u16, u16)>,
    reader: u64,
    /// Where the stream is read from, once the snapshot is cut.
    pos: Option<u64>,
    pos_rx: Option<std::sync::mpsc::Receiver<u64>>,
    /// Permits for [`IN_FLIGHT_KB`], given back as chunks are sent.
    in_flight: Arc<tokio::sync::Semaphore>,
    /// The snapshot is done: stream bytes may go.
    streaming: bool,
    filter: Filter,
    carry: Vec<u8>,
    scratch: Vec<u8>,
    out: Vec<u8>,
}

enum Handshake {
    Connect(String),
    Refused(String),
}

async fn connect(
    srv: &Shared,
    name: &str,
    addr: &(String, u16),
    body: &[u8],
) -> Result<TcpStream, Handshake> {
    let conn = tokio::time::timeout(
        Duration::from_secs(10),
        TcpStream::connect((addr.0.as_str(), addr.1)),
    )
    .await;
    let mut sock = match conn {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(Handshake::Connect(format!(
                "Unable to connect to target node: {e}"
            )))
        }
        Err(_) => {
            return Err(Handshake::Connect(
                "Unable to connect to target node: Connection timed out".into(),
            ))
        }
    };
    let _ = sock.set_nodelay(true);
    // A deep send queue keeps the link busy while the target applies a
    // large key (the default starts at 16 KB and grows slowly).
    let _ = socket2::SockRef::from(&sock).set_send_buffer_size(super::LINK_BUFFER);
    let (auth, user) = {
        let c = srv.config.read();
        (
            c.value("masterauth").to_string(),
            c.value("masteruser").to_string(),
        )
    };
    if !auth.is_empty() {
        let mut cmd = Vec::new();
        let mut args: Vec<&[u8]> = vec![b"AUTH"];
        if !user.is_empty() {
            args.push(user.as_bytes());
        }
        args.push(auth.as_bytes());
        crate::resp::parse::encode_command(&args, &mut cmd);
        if let Err(e) = sock.write_all(&cmd).await {
            return Err(Handshake::Connect(format!(
                "Failed to send AUTH command to target node: {e}"
            )));
        }
        match read_line(&mut sock).await {
            Some(l) if l.starts_with('-') => {
                return Err(Handshake::Connect(format!(
                    "Failed to AUTH to target node: {l}"
                )))
            }
            Some(_) => {}
            None => {
                return Err(Handshake::Connect(
                    "Target node did not respond to AUTH command".into(),
                ))
            }
        }
    }
    if sock.write_all(body).await.is_err() {
        return Err(Handshake::Connect(
            "Unable to connect to target node: write failed".into(),
        ));
    }
    match read_line(&mut sock).await {
        Some(l) if l.starts_with('-') => Err(Handshake::Refused(l)),
        Some(_) => Ok(sock),
        None => Err(Handshake::Connect(format!(
            "Unable to connect to target node: no reply to the handshake of job {name}"
        ))),
    }
}

/// Reads one reply line (the handshake's replies are one line each).
async fn read_line(sock: &mut TcpStream) -> Option<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    let read = async {
        loop {
            match sock.read(&mut b).await {
                Ok(1) => {
                    line.push(b[0]);
                    if line.ends_with(b"\r\n") {
                        line.truncate(line.len() - 2);
                        return true;
                    }
                    if line.len() > 64 * 1024 {
                        return false;
                    }
                }
                _ => return false,
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(10), read).await {
        Ok(true) => Some(String::from_utf8_lossy(&line).into_owned()),
        _ => None,
    }
}

async fn run(
    srv: Arc<Shared>,
    name: String,
    addr: (String, u16),
    mut ctl: UnboundedReceiver<Event>,
) {
    let Some(job) = srv.slotmig.get(&name) else {
        return;
    };
    let t = super::timing(&srv);
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let mut x = Export {
        srv: srv.clone(),
        name: name.clone(),
        t,
        slots: super::slot_table(&job.ranges),
        ranges: job.ranges.clone(),
        reader: reader_id(SEQ.fetch_add(1, Ordering::Relaxed)),
        pos: None,
        pos_rx: None,
        in_flight: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_KB as usize)),
        streaming: false,
        filter: Filter::new(super::slot_table(&job.ranges)),
        carry: Vec::new(),
        scratch: Vec::new(),
        out: Vec::new(),
    };
    let hello = super::establish_command(&job.source, &name, &job.ranges);
    let mut sock = match connect(&srv, &name, &addr, &hello).await {
        Ok(s) => s,
        Err(h) => {
            let ev = match h {
                Handshake::Connect(m) => Event::ConnectFailed(m),
                Handshake::Refused(l) => Event::Established(Err(l)),
            };
            let fx = x.step(ev);
            x.finish_effects(fx);
            return;
        }
    };
    tracing::info!(
        "Slot migration {name}: exporting {} to {}:{}",
        job.ranges_text(),
        addr.0,
        addr.1
    );
    let fx = x.step(Event::Established(Ok(())));
    let r = x.drive(&mut sock, &mut ctl, fx).await;
    drop(sock);
    if let Err(e) = r {
        let ev = if e.to_string() == super::FLUSHED {
            Event::Abort(super::FLUSHED.into())
        } else {
            // After the grant the target hangs up: that is expected.
            let granted = srv
                .slotmig
                .get(&name)
                .is_some_and(|j| j.phase == crate::cluster::slotmig::Phase::FailoverGranted);
            if !granted {
                tracing::warn!("Slot migration {name}: {e}");
            }
            Event::ConnectionLost
        };
        let fx = x.step(ev);
        x.finish_effects(fx);
    }
    // A granted job outlives its link: the target's claim arrives by
    // gossip, or the pause runs out.
    x.detached(&mut ctl).await;
    srv.log.with_buf(|b| b.repl.remove_reader(x.reader));
    if let Some(job) = srv.slotmig.get(&name) {
        if job.phase != crate::cluster::slotmig::Phase::Success {
            // The grant, if any, is void: a late claim must not win.
            if let Some(cl) = srv.cluster.get() {
                cl.with(&srv, |st| {
                    st.granted.retain(|s, _| !job.contains(*s));
                });
            }
        }
        tracing::info!(
            "Slot migration {name} ended: {} {}",
            job.phase.name(),
            job.message
        );
    }
}

impl Drop for Export {
    /// A snapshot thread waiting for room gives up: nobody sends anymore.
    fn drop(&mut self) {
        self.in_flight.close();
    }
}

impl Export {
    fn step(&mut self, ev: Event) -> Vec<Effect> {
        self.srv.slotmig.step(&self.name, ev, now_ms(), &self.t)
    }

    /// Without the link, until the job ends: ownership changes and the
    /// clock drive it.
    async fn detached(&mut self, ctl: &mut UnboundedReceiver<Event>) {
        let route_changed = self.srv.cluster.get().cloned();
        loop {
            let Some(job) = self.srv.slotmig.get(&self.name) else {
                return;
            };
            if job.phase.is_final() {
                return;
            }
            let mut fx = self.step(Event::Tick);
            fx.extend(self.step(super::owners_event(&self.srv, &job)));
            self.finish_effects(fx);
            let changed = async {
                match &route_changed {
                    Some(c) => c.route_changed.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                ev = ctl.recv() => {
                    if let Some(ev) = ev {
                        let fx = self.step(ev);
                        self.finish_effects(fx);
                    }
                }
            }
        }
    }

    /// Effects once the link is gone: only local ones apply.
    fn finish_effects(&mut self, fx: Vec<Effect>) {
        for e in fx {
            match e {
                Effect::Unpause => self.srv.pause.stop(&self.srv),
                Effect::DeleteSlotKeys => self.delete_keys(),
                _ => {}
            }
        }
    }

    /// Drops the keys of slots the target took, on a blocking thread (a
    /// large job's keys take a while to free; Valkey frees them lazily).
    fn delete_keys(&self) {
        if let Some(job) = self.srv.slotmig.get(&self.name) {
            let srv = self.srv.clone();
            let name = self.name.clone();
            tokio::task::spawn_blocking(move || {
                let n = super::delete_unowned_keys(&srv, &job);
                tracing::info!("Slot migration {name}: deleted {n} keys of the moved slots");
            });
        }
    }

    async fn drive(
        &mut self,
        sock: &mut TcpStream,
        ctl: &mut UnboundedReceiver<Event>,
        mut fx: Vec<Effect>,
    ) -> std::io::Result<()> {
        let (mut rd, mut wr) = sock.split();
        let mut rbuf = bytes::BytesMut::with_capacity(1024);
        let mut snap: Option<tokio::sync::mpsc::Receiver<Chunk>> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut last_ack = now_ms();
        let route_cl = self.srv.cluster.get().cloned();
        loop {
            // Carry out what the job decided.
            let mut pending: std::collections::VecDeque<Effect> = fx.drain(..).collect();
            while let Some(e) = pending.pop_front() {
                match e {
                    Effect::Send(m) => {
                        if matches!(m, Msg::Paused | Msg::FailoverGranted) {
                            // Everything written before the pause goes first.
                            // Writes other threads admitted before the
                            // pause end first (see `Pause::drain`).
                            let srv = self.srv.clone();
                            if !srv.pause.drain(Duration::from_secs(5)).await {
                                tracing::warn!(
                                    "Slot migration {}: writes still running 5 s into the pause",
                                    self.name
                                );
                            }
                            self.quiesce();
                            self.forward(&mut wr, true).await?;
                        }
                        if m == Msg::FailoverGranted {
                            self.grant();
                            // Nothing may be written after the grant.
                            self.streaming = false;
                        }
                        wr.write_all(&super::encode_msg(m)).await?;
                    }
                    Effect::StartSnapshot => snap = Some(self.start_snapshot()),
                    Effect::PauseWrites { until } => {
                        self.srv
                            .pause
                            .start(&self.srv, crate::server::pause::WRITE, until)
                    }
                    Effect::Unpause => self.srv.pause.stop(&self.srv),
                    Effect::DeleteSlotKeys => self.delete_keys(),
                    Effect::ClaimSlots => {}
                    Effect::Close => return Ok(()),
                }
            }
            let srv = self.srv.clone();
            let notified = srv.log.repl_notify.notified();
            tokio::pin!(notified);
            if self.streaming {
                notified.as_mut().enable();
                self.srv.log.repl_waiting.store(true, Ordering::Release);
                self.forward(&mut wr, false).await?;
            }
            tokio::select! {
                chunk = async { snap.as_mut().expect("guarded").recv().await }, if snap.is_some() => {
                    if self.pos.is_none() {
                        self.pos = self.pos_rx.as_ref().and_then(|r| r.try_recv().ok());
                    }
                    match chunk {
                        Some(Some((bytes, keys, kb))) => {
                            wr.write_all(&bytes).await?;
                            self.srv.slotmig.progress(&self.name, keys as u64, bytes.len() as u64);
                            self.srv.log.give_back(bytes);
                            self.in_flight.add_permits(kb as usize);
                        }
                        _ => {
                            snap = None;
                            self.srv.log.drop_spares();
                            if self.pos.is_none() {
                                return Err(std::io::Error::other("the snapshot could not be taken"));
                            }
                            self.streaming = true;
                            fx = self.step(Event::SnapshotDone);
                        }
                    }
                }
                r = rd.read_buf(&mut rbuf) => {
                    if r? == 0 {
                        return Err(std::io::Error::other("the target closed the connection"));
                    }
                    fx = self.messages(&mut rbuf);
                }
                ev = ctl.recv() => {
                    if let Some(ev) = ev {
                        fx = self.step(ev);
                    }
                }
                _ = &mut notified, if self.streaming => {}
                _ = async {
                    match &route_cl {
                        Some(c) => c.route_changed.notified().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some(job) = self.srv.slotmig.get(&self.name) {
                        fx = self.step(super::owners_event(&self.srv, &job));
                    }
                }
                _ = tick.tick() => {
                    let mut f = self.step(Event::Tick);
                    if let Some(job) = self.srv.slotmig.get(&self.name) {
                        f.extend(self.step(super::owners_event(&self.srv, &job)));
                    }
                    fx = f;
                    let now = now_ms();
                    if now - last_ack >= 1000 && snap.is_none() {
                        last_ack = now;
                        wr.write_all(&super::encode_msg(Msg::Ack)).await?;
                    }
                }
            }
        }
    }

    /// The target's control messages in `rbuf`.
    fn messages(&mut self, rbuf: &mut bytes::BytesMut) -> Vec<Effect> {
        let mut fx = Vec::new();
        let mut ranges = Vec::new();
        let limits = crate::resp::Limits {
            max_bulk_len: 1 << 20,
            authenticated: true,
        };
        loop {
            match crate::resp::parse_request(rbuf, &limits, &mut ranges, &mut self.scratch) {
                Ok(Some(crate::resp::Parsed::Multibulk { consumed })) => {
                    let args = crate::command::Args::new(&rbuf[..consumed], &ranges);
                    if let Some(m) = super::parse_msg(&args) {
                        fx.extend(self.step(Event::Received(m)));
                    }
                    let _ = rbuf.split_to(consumed);
                }
                Ok(Some(
                    crate::resp::Parsed::Inline { consumed }
                    | crate::resp::Parsed::Empty { consumed },
                )) => {
                    let _ = rbuf.split_to(consumed);
                }
                Ok(None) => break,
                Err(_) => {
                    fx.extend(self.step(Event::ConnectionLost));
                    break;
                }
            }
        }
        fx
    }

    /// Takes the snapshot on a blocking thread: cut (registering our read
    /// position in the stream), then the slots' commands as the sweep
    /// reaches them.
    fn start_snapshot(&mut self) -> tokio::sync::mpsc::Receiver<Chunk> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(64);
        let (pos_tx, pos_rx) = std::sync::mpsc::channel::<u64>();
        let srv = self.srv.clone();
        let slots = self.slots.clone();
        let reader = self.reader;
        let in_flight = self.in_flight.clone();
        let rt = tokio::runtime::Handle::current();
        let started = std::thread::Builder::new()
            .name("slot-export".into())
            .spawn(move || {
                let deadline = std::time::Instant::now() + Duration::from_secs(600);
                while srv.log.snapshot_busy.swap(true, Ordering::SeqCst) {
                    if std::time::Instant::now() > deadline || tx.is_closed() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                let now = now_ms();
                crate::persistence::slot_snapshot_at_cut(
                    &srv,
                    &slots,
                    now,
                    || {
                        let (pos, _) = crate::replication::master::open_stream_at_cut(&srv, &[]);
                        srv.log.with_buf(|b| b.repl.set_reader(reader, pos));
                        let _ = pos_tx.send(pos);
                    },
                    |chunk, keys| {
                        let kb = ((chunk.len() / 1024) as u32).clamp(1, IN_FLIGHT_KB);
                        // Waits while too much is queued (never under a slot
                        // lock); a closed semaphore means the job is over.
                        match rt.block_on(in_flight.acquire_many(kb)) {
                            Ok(p) => p.forget(),
                            Err(_) => return,
                        }
                        let _ = tx.blocking_send(Some((chunk, keys, kb)));
                    },
                );
                srv.log.snapshot_busy.store(false, Ordering::SeqCst);
                let _ = tx.blocking_send(None);
            });
        if started.is_err() {
            let (_, rx) = tokio::sync::mpsc::channel::<Chunk>(1);
            return rx;
        }
        // The cut comes first, before any chunk: wait for it on the
        // channel's side (the first recv sees it set).
        self.pos_rx = Some(pos_rx);
        rx
    }

    /// Waits out the holders of the job's slots' locks (an offloaded
    /// command's, which the pause's drain does not count): their effects
    /// are logged under the slot lock, so once we have held each lock
    /// they are all in the stream.
    fn quiesce(&self) {
        let db = self.srv.ks.db(0);
        let now = now_ms();
        for &(a, b) in &self.ranges {
            for s in a..=b {
                drop(db.lock_slot(s, now));
            }
        }
    }

    /// The target may claim the slots now, whatever its epoch.
    fn grant(&self) {
        let (Some(cl), Some(job)) = (self.srv.cluster.get(), self.srv.slotmig.get(&self.name))
        else {
            return;
        };
        let Some(target) = crate::cluster::id::NodeId::parse(job.target.as_bytes()) else {
            return;
        };
        cl.with(&self.srv, |st| {
            for &(a, b) in &job.ranges {
                for s in a..=b {
                    st.granted.insert(s, target);
                }
            }
        });
    }

    /// Sends the job's share of the stream written since the cut: all of
    /// it up to now when `all`, otherwise what one turn reads.
    async fn forward(
        &mut self,
        wr: &mut tokio::net::tcp::WriteHalf<'_>,
        all: bool,
    ) -> std::io::Result<()> {
        let Some(mut pos) = self.pos else {
            return Ok(());
        };
        let mut turns = 0;
        loop {
            let start = self.carry.len();
            let got = self
                .srv
                .log
                .with_buf(|b| b.repl.read(pos, READ_CHUNK, &mut self.carry));
            let n = match got {
                Ok(n) => n,
                Err(ReadError::Gone) => {
                    return Err(std::io::Error::other(
                        "the replication backlog moved past the migration's stream",
                    ))
                }
            };
            debug_assert_eq!(self.carry.len(), start + n);
            if n == 0 {
                break;
            }
            pos += n as u64;
            self.srv
                .log
                .with_buf(|b| b.repl.set_reader(self.reader, pos));
            self.out.clear();
            match self.filter.feed(&self.carry, &mut self.out) {
                Ok((used, kept)) => {
                    self.carry.drain(..used);
                    if !self.out.is_empty() {
                        wr.write_all(&self.out).await?;
                        self.srv
                            .slotmig
                            .progress(&self.name, kept, self.out.len() as u64);
                    }
                }
                Err(FeedError::Flushed) => {
                    self.pos = Some(pos);
                    return Err(std::io::Error::other(super::FLUSHED));
                }
                Err(FeedError::Protocol(e)) => {
                    self.pos = Some(pos);
                    return Err(std::io::Error::other(e));
                }
            }
            turns += 1;
            if !all && turns >= 16 {
                break;
            }
        }
        self.pos = Some(pos);
        Ok(())
    }
}
