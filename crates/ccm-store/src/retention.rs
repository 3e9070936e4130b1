//! Housekeeping deletions: REJECTED certificate requests past their retention.

use crate::util::uuid;
use crate::{Result, Store};

/// Rows deleted per transaction by [`Store::purge_rejected_requests`], so the sweep never holds
/// the write lock for long.
pub const PURGE_BATCH: i64 = 500;

impl Store {
    /// Deletes REJECTED certificate requests (with their CSR and quote) last updated at or
    /// before `cutoff`, and their CERTIFICATE_ISSUANCE tasks, in batches of [`PURGE_BATCH`].
    /// Returns how many requests were deleted.
    pub async fn purge_rejected_requests(&self, cutoff: i64) -> Result<u64> {
        let mut total = 0u64;
        loop {
            let mut w = self.begin_write().await?;
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT certificate_id, task_id FROM certificates \
                 WHERE status = 'REJECTED' AND updated_at <= $1 ORDER BY updated_at LIMIT $2",
            )
            .bind(cutoff)
            .bind(PURGE_BATCH)
            .fetch_all(&mut *w.tx)
            .await?;
            let n = rows.len();
            for (certificate_id, task_id) in rows {
                // Parsed to be sure only ids are bound.
                let certificate_id = uuid("certificates.certificate_id", &certificate_id)?;
                let task_id = uuid("certificates.task_id", &task_id)?;
                sqlx::query(
                    "DELETE FROM certificates WHERE certificate_id = $1 AND status = 'REJECTED'",
                )
                .bind(certificate_id.to_string())
                .execute(&mut *w.tx)
                .await?;
                sqlx::query(
                    "DELETE FROM tasks WHERE task_id = $1 AND task_type = 'CERTIFICATE_ISSUANCE'",
                )
                .bind(task_id.to_string())
                .execute(&mut *w.tx)
                .await?;
            }
            w.commit().await?;
            total = total.saturating_add(n as u64);
            if (n as i64) < PURGE_BATCH {
                return Ok(total);
            }
        }
    }
}
