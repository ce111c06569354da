//! Recording events: a row in the store (the history every reader shares)
//! and a broadcast to live streams.

use tokio::sync::broadcast;

use crate::store::{EventRow, NewEvent, Store};

#[derive(Clone)]
pub struct Events {
    store: Store,
    tx: broadcast::Sender<EventRow>,
}

impl Events {
    pub fn new(store: Store) -> Events {
        let (tx, _) = broadcast::channel(1024);
        Events { store, tx }
    }

    /// Records an event; a store failure is logged (the history must not
    /// stop the work it describes).
    pub async fn record(&self, e: NewEvent) -> Option<i64> {
        let now = crate::now_ms();
        match self.store.append_event(&e, now).await {
            Ok(id) => {
                let _ = self.tx.send(EventRow {
                    id,
                    time: now,
                    cluster: e.cluster,
                    kind: e.kind,
                    node: e.node,
                    job: e.job,
                    actor: e.actor,
                    details: e.details,
                });
                Some(id)
            }
            Err(err) => {
                tracing::warn!("could not record event {}: {err}", e.kind);
                None
            }
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<EventRow> {
        self.tx.subscribe()
    }
}

/// A cluster's events after `after`, then each new one as it is recorded:
/// the history first from the store, then the broadcast. Events another
/// control plane sharing the database records reach us through the store,
/// read again after a quiet second.
pub fn follow(
    events: &Events,
    cluster: String,
    after: i64,
) -> impl futures_util::Stream<Item = EventRow> + Send + 'static {
    use std::collections::VecDeque;
    struct St {
        store: Store,
        cluster: String,
        // Subscribed before the history is read: nothing recorded in
        // between is missed (duplicates are skipped by id).
        rx: broadcast::Receiver<EventRow>,
        backlog: VecDeque<EventRow>,
        last: i64,
        loaded: bool,
    }
    async fn refill(st: &mut St) {
        let f = crate::store::EventFilter {
            after: Some(st.last),
            limit: 1000,
            ..Default::default()
        };
        match st.store.events(&st.cluster, &f).await {
            Ok(ev) => st.backlog.extend(ev),
            Err(e) => tracing::warn!("event stream: cannot read the history: {e}"),
        }
    }
    let st = St {
        store: events.store.clone(),
        cluster,
        rx: events.subscribe(),
        backlog: VecDeque::new(),
        last: after,
        loaded: false,
    };
    futures_util::stream::unfold(st, |mut st| async move {
        if !st.loaded {
            st.loaded = true;
            refill(&mut st).await;
        }
        loop {
            if let Some(e) = st.backlog.pop_front() {
                if e.id <= st.last {
                    continue;
                }
                st.last = e.id;
                return Some((e, st));
            }
            let next = tokio::time::timeout(std::time::Duration::from_secs(1), st.rx.recv());
            match next.await {
                Ok(Ok(e)) if e.cluster == st.cluster && e.id > st.last => {
                    // An id gap means an event we did not hear of (another
                    // process, or a lost race): read the store.
                    if e.id > st.last + 1 {
                        refill(&mut st).await;
                    }
                    st.backlog.push_back(e);
                }
                Ok(Ok(_)) => {}
                Ok(Err(broadcast::error::RecvError::Lagged(_))) | Err(_) => refill(&mut st).await,
                Ok(Err(broadcast::error::RecvError::Closed)) => return None,
            }
        }
    })
}
