//! `TaskResultStore`: one task output, read from the results hash, which is the current
//! results while the workflow holds them and the archive once it is Completed or Failed.

use bytes::Bytes;
use sayiir_persistence::{BackendError, TaskResultStore};

use crate::error::{self, at};
use crate::reply::Items;
use crate::{RedisBackend, Retry, scripts};
use sayiir_persistence::operation::Call;

impl TaskResultStore for RedisBackend {
    async fn load_task_result(
        &self,
        instance_id: &str,
        task_id: &str,
    ) -> Result<Option<Bytes>, BackendError> {
        self.calls()
            .run(Call::LoadTaskResult { instance_id, task_id }, async {
                let at = at("load_task_result").instance(instance_id).task(task_id);
                let keys = self.keys().workflow(instance_id);
                let args: [&[u8]; 1] = [task_id.as_bytes()];
                let reply = self
                    .run_workflow_script(
                        &at,
                        &scripts().load_task_result,
                        &keys,
                        instance_id,
                        &args,
                        Retry::OnReconnect,
                    )
                    .await?;
                let mut items = Items::new(reply, at)?;
                match items.text()?.as_deref() {
                    Some("ok") => Ok(items.bytes()?.map(Bytes::from)),
                    Some("not_found") => Err(BackendError::NotFound(instance_id.to_string())),
                    Some("corrupt") => {
                        let status = items.text()?.unwrap_or_default();
                        Err(error::corrupt(&at, &format!("field st (status) is {status:?}")))
                    }
                    other => Err(error::reply(&at, &format!("returned {other:?}"))),
                }
            })
            .await
    }
}
