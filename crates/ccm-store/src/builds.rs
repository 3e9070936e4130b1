//! Images (builds) and their whitelisting workflow.
//!
//! An image recorded without container coordinates (`docker_info`, optional in the reference)
//! is stored with an empty `docker_image_name` and its MRENCLAVE as `docker_version`: the
//! columns stay NOT NULL (the migrations cannot relax them the same way on both databases), an
//! empty name never comes from a request (image names are validated), and the unique
//! `(app_id, docker_image_name, docker_version)` then allows one such image per app and
//! MRENCLAVE.

use ccm_api::builds::{Build, BuildStatus, BuildStatusType, DockerInfo, EnclaveInfo};
use ccm_api::tasks::TaskType;
use serde_json::json;
use sqlx::AnyConnection;
use uuid::Uuid;

use crate::conversions::ConversionColumns;
use crate::error::on_unique;
use crate::paging::{Bind, Key, ListSpec};
use crate::tasks::{self, NewTask};
use crate::util::{enum_value, opt_uuid, uuid};
use crate::{Actor, Effect, Error, Page, PageRequest, Result, Store, audit};

#[derive(sqlx::FromRow)]
struct BuildRow {
    build_id: String,
    acct_id: String,
    app_id: String,
    app_name: String,
    docker_image_name: String,
    docker_version: String,
    docker_image_sha: Option<String>,
    docker_image_size: Option<i64>,
    mrenclave: String,
    mrsigner: String,
    isvprodid: i64,
    isvsvn: i64,
    mem_size: i64,
    threads: i64,
    status: String,
    status_updated_at: i64,
    pending_task_id: Option<String>,
    created_at: i64,
    updated_at: i64,
    #[sqlx(flatten)]
    conversion: ConversionColumns,
}

const BUILD_SELECT: &str = "SELECT b.build_id, b.acct_id, b.app_id, a.name AS app_name, \
     b.docker_image_name, b.docker_version, b.docker_image_sha, b.docker_image_size, b.mrenclave, \
     b.mrsigner, b.isvprodid, b.isvsvn, b.mem_size, b.threads, b.status, b.status_updated_at, \
     b.pending_task_id, b.created_at, b.updated_at, \
     c.status AS conv_status, c.phase AS conv_phase, c.progress AS conv_progress, \
     c.bytes_done AS conv_bytes_done, c.bytes_total AS conv_bytes_total, \
     c.input_image AS conv_input_image, c.output_image AS conv_output_image, c.debug AS conv_debug, \
     c.attempts AS conv_attempts, c.error AS conv_error, c.created_at AS conv_created_at, \
     c.started_at AS conv_started_at, c.finished_at AS conv_finished_at, \
     c.updated_at AS conv_updated_at \
     FROM builds b JOIN apps a ON a.app_id = b.app_id \
     LEFT JOIN conversions c ON c.build_id = b.build_id";

/// Filters for [`Store::list_builds`].
#[derive(Debug, Clone, Default)]
pub struct BuildFilter {
    /// Only images of this app.
    pub app_id: Option<Uuid>,
    /// Only images in this status.
    pub status: Option<BuildStatusType>,
}

impl BuildRow {
    fn into_build(self) -> Result<Build> {
        Ok(Build {
            build_id: uuid("builds.build_id", &self.build_id)?,
            acct_id: uuid("builds.acct_id", &self.acct_id)?,
            app_id: uuid("builds.app_id", &self.app_id)?,
            app_name: self.app_name,
            docker_info: (!self.docker_image_name.is_empty()).then_some(DockerInfo {
                docker_image_name: self.docker_image_name,
                docker_version: self.docker_version,
                docker_image_sha: self.docker_image_sha,
                docker_image_size: self.docker_image_size,
            }),
            enclave_info: EnclaveInfo {
                mrenclave: self.mrenclave,
                mrsigner: self.mrsigner,
                isvprodid: self.isvprodid,
                isvsvn: self.isvsvn,
            },
            mem_size: self.mem_size,
            threads: self.threads,
            status: BuildStatus {
                status: enum_value("builds.status", &self.status, BuildStatusType::parse)?,
                status_updated_at: self.status_updated_at,
            },
            pending_task_id: opt_uuid("builds.pending_task_id", self.pending_task_id.as_deref())?,
            conversion: self.conversion.into_conversion()?,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

pub(crate) async fn load(
    conn: &mut AnyConnection,
    acct_id: Uuid,
    build_id: Uuid,
) -> Result<Option<Build>> {
    let row: Option<BuildRow> = sqlx::query_as(&format!(
        "{BUILD_SELECT} WHERE b.build_id = $1 AND b.acct_id = $2"
    ))
    .bind(build_id.to_string())
    .bind(acct_id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    row.map(BuildRow::into_build).transpose()
}

impl Store {
    /// Records an image of an app and raises its BUILD_WHITELIST task (approved at once under the
    /// AUTO_APPROVE policy, writing `on_approve`). The app must belong to the build's account.
    pub async fn create_build(
        &self,
        b: &Build,
        on_approve: &Effect,
        actor: &Actor,
        now: i64,
    ) -> Result<Build> {
        let mut w = self.begin_write().await?;
        let app: Option<(String,)> =
            sqlx::query_as("SELECT name FROM apps WHERE app_id = $1 AND acct_id = $2")
                .bind(b.app_id.to_string())
                .bind(b.acct_id.to_string())
                .fetch_optional(&mut *w.tx)
                .await?;
        let (app_name,) = app.ok_or(Error::NotFound("app"))?;
        let task_id = Uuid::new_v4();
        let (name, version, sha, size, unique_field) = match &b.docker_info {
            Some(d) => (
                d.docker_image_name.as_str(),
                d.docker_version.as_str(),
                d.docker_image_sha.as_deref(),
                d.docker_image_size,
                "docker_info.docker_version",
            ),
            None => (
                "",
                b.enclave_info.mrenclave.as_str(),
                None,
                None,
                "mrenclave",
            ),
        };
        sqlx::query(
            "INSERT INTO builds (build_id, acct_id, app_id, docker_image_name, docker_version, \
             docker_image_sha, docker_image_size, mrenclave, mrsigner, isvprodid, isvsvn, mem_size, \
             threads, status, status_updated_at, pending_task_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'PENDING', $14, $15, $14, $14)",
        )
        .bind(b.build_id.to_string())
        .bind(b.acct_id.to_string())
        .bind(b.app_id.to_string())
        .bind(name)
        .bind(version)
        .bind(sha)
        .bind(size)
        .bind(&b.enclave_info.mrenclave)
        .bind(&b.enclave_info.mrsigner)
        .bind(b.enclave_info.isvprodid)
        .bind(b.enclave_info.isvsvn)
        .bind(b.mem_size)
        .bind(b.threads)
        .bind(now)
        .bind(task_id.to_string())
        .execute(&mut *w.tx)
        .await
        .map_err(on_unique("image", unique_field))?;
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(b.acct_id),
            "build.create",
            "build",
            Some(b.build_id),
            json!({"app_id": b.app_id, "mrenclave": b.enclave_info.mrenclave, "mrsigner": b.enclave_info.mrsigner,
                   "image": b.docker_info.as_ref().map(|d| format!("{}:{}", d.docker_image_name, d.docker_version))}),
        )
        .await?;
        let description = match &b.docker_info {
            Some(d) => format!(
                "Whitelist image {}:{} (MRENCLAVE {}) of app {app_name}",
                d.docker_image_name, d.docker_version, b.enclave_info.mrenclave
            ),
            None => format!(
                "Whitelist image MRENCLAVE {} of app {app_name}",
                b.enclave_info.mrenclave
            ),
        };
        tasks::create(
            &mut w.tx,
            NewTask {
                acct_id: b.acct_id,
                task_id,
                entity_id: b.build_id,
                task_type: TaskType::BuildWhitelist,
                description,
                requester: actor,
                requester_type: ccm_api::tasks::RequesterType::User,
                domains_added: Vec::new(),
                proposal: None,
                on_approve: Some(on_approve),
            },
            now,
        )
        .await?;
        let build = load(&mut w.tx, b.acct_id, b.build_id)
            .await?
            .ok_or(Error::NotFound("image"))?;
        w.commit().await?;
        Ok(build)
    }

    /// One page of an account's images, newest first, optionally of one app or in one status.
    pub async fn list_builds(
        &self,
        acct_id: Uuid,
        filter: &BuildFilter,
        req: &PageRequest,
    ) -> Result<Page<Build>> {
        let mut filters = Vec::new();
        if let Some(app) = filter.app_id {
            filters.push(("b.app_id", Bind::Text(app.to_string())));
        }
        if let Some(status) = filter.status {
            filters.push(("b.status", Bind::Text(status.as_str().to_string())));
        }
        let spec = ListSpec {
            name: "builds",
            select: BUILD_SELECT.to_string(),
            count_from: "builds b",
            key: "b.created_at",
            text_key: false,
            id: "b.build_id",
            desc: true,
            scope: vec![("b.acct_id", Bind::Text(acct_id.to_string()))],
            filters,
            counts: Some(&crate::counts::BUILDS),
        };
        let page = spec
            .fetch::<BuildRow>(&self.pool, req, |r| {
                (Key::Int(r.created_at), r.build_id.clone())
            })
            .await?;
        page.try_map(BuildRow::into_build)
    }

    /// An image of an account.
    pub async fn get_build(&self, acct_id: Uuid, build_id: Uuid) -> Result<Option<Build>> {
        let mut conn = self.pool.acquire().await?;
        load(&mut conn, acct_id, build_id).await
    }

    /// Deletes an image and its tasks, writing `cascade` (what happens to its certificates, as
    /// the service decided it) first, in one transaction.
    pub async fn delete_build(
        &self,
        acct_id: Uuid,
        build_id: Uuid,
        cascade: &Effect,
        actor: &Actor,
        now: i64,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        let old = load(&mut w.tx, acct_id, build_id)
            .await?
            .ok_or(Error::NotFound("image"))?;
        sqlx::query("DELETE FROM tasks WHERE acct_id = $1 AND entity_id = $2")
            .bind(acct_id.to_string())
            .bind(build_id.to_string())
            .execute(&mut *w.tx)
            .await?;
        crate::effects::write(
            &mut w.tx,
            crate::Subject::Image(build_id),
            None,
            cascade,
            actor,
            now,
        )
        .await?;
        sqlx::query("DELETE FROM builds WHERE build_id = $1 AND acct_id = $2")
            .bind(build_id.to_string())
            .bind(acct_id.to_string())
            .execute(&mut *w.tx)
            .await?;
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(acct_id),
            "build.delete",
            "build",
            Some(build_id),
            json!({"app_id": old.app_id, "mrenclave": old.enclave_info.mrenclave, "status": old.status.status.as_str()}),
        )
        .await?;
        w.commit().await
    }
}
