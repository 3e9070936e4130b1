//! Image conversions by the manager: starting one (the request's checks, the app's settings,
//! sealed credentials and the queued job are [`request`]) and its progress. The background
//! workers that run the jobs are `crate::conversion`.

use ccm_api::accounts::AccessRole;
use ccm_api::builds::{Build, ConversionProgress, ConvertAppBuildRequest};
use uuid::Uuid;

pub(crate) mod request;

use super::{ServiceError, ServiceResult};
use crate::AppState;
use crate::service::caller::Acct;

/// Validates a conversion request, records the image and queues its job (WRITER); the workers
/// are woken. The image is answered with its `conversion` QUEUED.
pub async fn start(s: &AppState, acct: &Acct, req: ConvertAppBuildRequest) -> ServiceResult<Build> {
    acct.require(AccessRole::Writer)?;
    request::create(s, acct, req).await
}

/// The conversion job of an image of the account: status, phase, progress and its log. Not
/// found for images the manager did not convert.
pub async fn progress(
    s: &AppState,
    acct: &Acct,
    build_id: Uuid,
) -> ServiceResult<ConversionProgress> {
    s.store
        .get_conversion(acct.acct_id, build_id)
        .await?
        .ok_or(ServiceError::NotFound("conversion of this image"))
}
