//! The server as the cluster layer sees it: the [`Host`] the cluster's
//! shell reads replication progress from and hands its decisions to.

use std::sync::Arc;

use super::Shared;
use crate::cluster::Host;
use crate::config::Config;

impl Host for Shared {
    fn with_config<R>(&self, f: impl FnOnce(&Config) -> R) -> R {
        f(&self.config.read())
    }

    fn repl_offset(&self) -> u64 {
        self.log.repl_offset()
    }

    fn master_data_time(&self) -> i64 {
        self.repl.state.lock().master.as_ref().map_or(0, |m| {
            if m.state == crate::replication::LinkState::Connected {
                m.last_io_ms
            } else {
                m.down_since_ms
            }
        })
    }

    fn keys_in_slot(&self, slot: u16) -> usize {
        self.ks.db(0).slot_keys(slot)
    }

    fn drop_slot_keys(&self, slot: u16) -> usize {
        crate::command::keys::delete_slot_keys(self, slot)
    }

    fn deliver_publish(&self, channel: &[u8], message: &[u8], sharded: bool) {
        if sharded {
            self.pubsub.spublish(channel, message);
        } else {
            self.pubsub.publish(channel, message);
        }
    }

    fn pause_writes(&self, until: i64) {
        self.pause.start(self, super::pause::WRITE, until);
    }

    fn unpause_writes(&self) {
        self.pause.stop(self);
    }

    fn role_changed(self: &Arc<Self>) {
        super::follow_cluster_role(self);
    }
}
