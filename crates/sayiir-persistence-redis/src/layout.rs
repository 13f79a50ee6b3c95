//! The key layout a store was written in (see `keys.rs`), checked when a backend connects:
//! a store read in another layout would look empty, and writes would go beside it.

use sayiir_persistence::BackendError;

use crate::error::At;
use crate::{RedisBackend, Retry};

impl RedisBackend {
    /// Refuses a store written in another key layout or with another shard count, and records
    /// the layout of a new sharded store (`{<prefix>}:layout` = `shards=<n>`; a store of the
    /// single-node layout has no such key).
    pub(crate) async fn check_layout(&self, at: &At<'_>) -> Result<(), BackendError> {
        let keys = self.keys();
        let layout = keys.layout();
        let recorded: Option<String> =
            self.query(at, redis::cmd("GET").arg(&layout), Retry::OnReconnect).await?;
        if !keys.sharded() {
            return match recorded {
                None => Ok(()),
                Some(recorded) => Err(at.backend(format_args!(
                    "the store under this key prefix was written in the sharded key layout \
                     ({recorded}, key {layout}), and this backend uses the single-node layout; \
                     connect with RedisOptions::index_shards set to that count (or with \
                     RedisBackend::connect_cluster)"
                ))),
            };
        }
        let wanted = format!("shards={}", keys.shard_count());
        let recorded = match recorded {
            Some(recorded) => recorded,
            None => {
                let mut single = redis::cmd("EXISTS");
                single.arg(keys.single_node_instances());
                let written: bool = self.query(at, &single, Retry::OnReconnect).await?;
                if written {
                    return Err(at.backend(format_args!(
                        "the store under this key prefix was written in the single-node key \
                         layout (key {} exists), and this backend uses {wanted}; connect \
                         without RedisOptions::index_shards, or move the store with \
                         `sayiir-admin export` and `import` into a backend of the sharded layout",
                        keys.single_node_instances()
                    )));
                }
                let mut record = redis::cmd("SET");
                record.arg(&layout).arg(&wanted).arg("NX");
                let set: Option<String> = self.query(at, &record, Retry::OnReconnect).await?;
                if set.is_some() {
                    return Ok(());
                }
                // Another backend created the store meanwhile: its layout is the one to check.
                let mut get = redis::cmd("GET");
                get.arg(&layout);
                let recorded: Option<String> = self.query(at, &get, Retry::OnReconnect).await?;
                recorded.ok_or_else(|| {
                    at.backend(format_args!(
                        "the layout key {layout} was written by another backend and removed \
                         again while this one connected; connect again"
                    ))
                })?
            }
        };
        if recorded == wanted {
            return Ok(());
        }
        Err(at.backend(format_args!(
            "the store under this key prefix was written with {recorded} (key {layout}), and \
             this backend asks for {wanted}; the shard count of a store never changes: connect \
             with RedisOptions::index_shards set to the recorded count, or move the store with \
             `sayiir-admin export` and `import`"
        )))
    }
}
