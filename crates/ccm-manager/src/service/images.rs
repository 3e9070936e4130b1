//! Images (builds) recorded from known values, and their deletion. Conversions
//! (`crate::conversion`) record images of their own.

use ccm_api::accounts::AccessRole;
use ccm_api::apps::App;
use ccm_api::builds::{
    Build, BuildStatus, BuildStatusType, CreateBuildRequest, DockerInfo, EnclaveInfo,
};
use ccm_api::list::PageQuery;
use ccm_api::tasks::ApprovalStatus;
use ccm_store::{BuildFilter, Page};
use uuid::Uuid;

use crate::AppState;
use crate::service::caller::Acct;
use crate::service::validate::{self, Checker};
use crate::service::{ServiceError, ServiceResult, paging};

/// Every field of a build from known values, checked together.
fn check(req: &CreateBuildRequest) -> ServiceResult<()> {
    let mut c = Checker::new();
    if req.app_id.is_none() && req.app_name.is_none() {
        c.err("app_id", "give the app (app_id or app_name)");
    }
    if let Some(name) = &req.app_name {
        c.text("app_name", name, 1, 128, false);
    }
    if let Some(docker) = &req.docker_info {
        c.image("docker_info.docker_image_name", &docker.docker_image_name);
        validate::tag(&mut c, "docker_info.docker_version", &docker.docker_version);
        if let Some(sha) = &docker.docker_image_sha {
            match sha.strip_prefix("sha256:") {
                Some(h) => c.hex32("docker_info.docker_image_sha", h),
                None => c.err(
                    "docker_info.docker_image_sha",
                    "must be sha256:<64 hex digits>",
                ),
            }
        }
        if let Some(size) = docker.docker_image_size {
            c.range("docker_info.docker_image_size", size, 0, 1 << 40);
        }
    }
    c.hex32("mrenclave", &req.mrenclave);
    c.hex32("mrsigner", &req.mrsigner);
    for (field, value, min, max) in [
        ("isvprodid", req.isvprodid, 0, 65535),
        ("isvsvn", req.isvsvn, 0, 65535),
        ("mem_size", req.mem_size, 16, 262_144),
        ("threads", req.threads, 1, 4096),
    ] {
        if let Some(v) = value {
            c.range(field, v, min, max);
        }
    }
    c.finish()
}

/// The app a build request names: by `app_id`, else by `app_name`; both must name the same app.
async fn requested_app(s: &AppState, acct: &Acct, req: &CreateBuildRequest) -> ServiceResult<App> {
    let missing = |field| ServiceError::MissingReference { what: "app", field };
    let app = match (req.app_id, &req.app_name) {
        (Some(id), _) => s
            .store
            .get_app(acct.acct_id, id)
            .await?
            .ok_or(missing("app_id"))?,
        (None, Some(name)) => s
            .store
            .app_by_name(acct.acct_id, name)
            .await?
            .ok_or(missing("app_name"))?,
        (None, None) => return Err(ServiceError::invalid("app_id", "give the app")),
    };
    if let Some(name) = &req.app_name
        && *name != app.name
    {
        return Err(ServiceError::invalid(
            "app_name",
            "names another app than app_id",
        ));
    }
    Ok(app)
}

/// Validates and records an image from known values (WRITER) and raises its BUILD_WHITELIST
/// task. ISVPRODID, ISVSVN, memory and threads default to the app's. An image without
/// `docker_info` is known by its enclave identity alone: an app has one such image per
/// MRENCLAVE (a second is 409 on `mrenclave`).
pub(crate) async fn create(
    s: &AppState,
    acct: &Acct,
    req: CreateBuildRequest,
) -> ServiceResult<Build> {
    acct.require(AccessRole::Writer)?;
    check(&req)?;
    let app = requested_app(s, acct, &req).await?;
    let now = s.clock.now();
    let build = Build {
        build_id: Uuid::new_v4(),
        acct_id: acct.acct_id,
        app_id: app.app_id,
        app_name: app.name,
        docker_info: req.docker_info.map(|d| DockerInfo {
            docker_image_sha: d.docker_image_sha.map(|s| s.to_ascii_lowercase()),
            ..d
        }),
        enclave_info: EnclaveInfo {
            mrenclave: req.mrenclave.to_ascii_lowercase(),
            mrsigner: req.mrsigner.to_ascii_lowercase(),
            isvprodid: req.isvprodid.unwrap_or(app.isvprodid),
            isvsvn: req.isvsvn.unwrap_or(app.isvsvn),
        },
        mem_size: req.mem_size.unwrap_or(app.mem_size),
        threads: req.threads.unwrap_or(app.threads),
        status: BuildStatus {
            status: BuildStatusType::Pending,
            status_updated_at: now,
        },
        pending_task_id: None,
        conversion: None,
        created_at: now,
        updated_at: now,
    };
    let on_approve = super::tasks::image_effect(ApprovalStatus::Approved);
    Ok(s.store
        .create_build(&build, &on_approve, &acct.actor(), now)
        .await?)
}

/// The account's images (of one app, when given), newest first.
pub(crate) async fn list(
    s: &AppState,
    acct: &Acct,
    filter: &BuildFilter,
    q: &PageQuery,
) -> ServiceResult<Page<Build>> {
    let req = paging::page_request(q)?;
    Ok(s.store.list_builds(acct.acct_id, filter, &req).await?)
}

/// An image of the account.
pub(crate) async fn get(s: &AppState, acct: &Acct, build_id: Uuid) -> ServiceResult<Build> {
    s.store
        .get_build(acct.acct_id, build_id)
        .await?
        .ok_or(ServiceError::NotFound("image"))
}

/// Deletes an image and its tasks (WRITER).
pub(crate) async fn delete(s: &AppState, acct: &Acct, build_id: Uuid) -> ServiceResult<()> {
    acct.require(AccessRole::Writer)?;
    s.store
        .delete_build(
            acct.acct_id,
            build_id,
            &super::cascade::image_deleted(),
            &acct.actor(),
            s.clock.now(),
        )
        .await?;
    Ok(())
}
