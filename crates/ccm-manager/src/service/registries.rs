//! Container registries whose credentials an account stores (`/v1/registry`).
//!
//! A registry is identified for image creation by its host (`host[:port]`, lower-case; Docker
//! Hub's aliases are `docker.io`), and an account has at most one registry per host. Its
//! password is sealed under the master key with `registry:<acct_id>:<registry_id>` as
//! associated data, so sealed bytes copied to another row or account do not open; it is never
//! returned and never logged. READERs list and read registries (without secrets); MANAGERs
//! create, change and delete them. Every change is audited (`registry.*`, without secrets).
//!
//! Image creation ([`credentials_for_image`]) takes, for each of its input and output images:
//! the request's own credentials first (`inputAuthConfig`/`outputAuthConfig`, then
//! `authConfig`), else the stored registry of the image's host. A request naming `registry_id`
//! insists on that registry: it is refused unless one of its images is on the registry's host.

use ccm_api::accounts::AccessRole;
use ccm_api::builds::AuthConfig;
use ccm_api::registries::{
    AppRegistryResponse, ImageRegistryResponse, PatchDocument, PatchOperation, Registry,
    RegistryAuth, RegistryCredential, RegistryRequest,
};
use ccm_image::Reference;
use ccm_store::{NewRegistry, RegistryEdit};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::caller::Acct;
use super::validate::{Checker, is_dns_name};
use super::{ServiceError, ServiceResult};
use crate::AppState;

/// The sealing context of a registry's credentials.
pub fn credentials_context(acct_id: Uuid, registry_id: Uuid) -> String {
    format!("registry:{acct_id}:{registry_id}")
}

/// The registry host of a URL or host as given: scheme and path dropped, lower-cased, Docker
/// Hub's aliases folded to `docker.io`.
pub fn registry_host(url: &str) -> Result<String, &'static str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    let host = rest
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host.as_str(), None),
    };
    if !(name == "localhost" || is_dns_name(name)) {
        return Err("must be a registry host name (host[:port]), optionally with https://");
    }
    if port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
        return Err("the port must be 1-65535");
    }
    Ok(match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        _ => host,
    })
}

fn check_url(c: &mut Checker, url: &str) -> Option<String> {
    c.text("url", url, 1, 512, false);
    match registry_host(url) {
        Ok(h) => Some(h),
        Err(e) => {
            c.err("url", e);
            None
        }
    }
}

fn check_description(c: &mut Checker, d: Option<&str>) {
    if let Some(d) = d {
        c.text("description", d, 1, 1024, false);
    }
}

/// The complete credentials of a request (both user name and password are required).
fn check_credential(c: &mut Checker, field: &str, cred: &RegistryCredential) -> Option<AuthConfig> {
    let auth = match &cred.default {
        Some(RegistryAuth {
            username: Some(u),
            password: Some(p),
        }) => AuthConfig {
            username: u.clone(),
            password: p.clone(),
        },
        _ => {
            c.err(
                format!("{field}.default"),
                "give the registry's username and password",
            );
            return None;
        }
    };
    let some = Some(auth);
    super::conversions::request::check_auth(c, &format!("{field}.default"), &some);
    some
}

fn seal(
    s: &AppState,
    acct_id: Uuid,
    registry_id: Uuid,
    auth: &AuthConfig,
) -> ServiceResult<Vec<u8>> {
    let plain = Zeroizing::new(serde_json::to_vec(auth).map_err(ServiceError::internal)?);
    Ok(s.master_key
        .seal(&credentials_context(acct_id, registry_id), &plain)?)
}

/// Stores a registry (MANAGER only); conflict when the account has one for the same host.
pub async fn create(s: &AppState, acct: &Acct, req: RegistryRequest) -> ServiceResult<Registry> {
    acct.require(AccessRole::Manager)?;
    let mut c = Checker::new();
    let host = check_url(&mut c, &req.url);
    check_description(&mut c, req.description.as_deref());
    let auth = check_credential(&mut c, "credential", &req.credential);
    c.finish()?;
    let (Some(host), Some(auth)) = (host, auth) else {
        return Err(ServiceError::invalid("url", "is not valid"));
    };
    let registry_id = Uuid::new_v4();
    let new = NewRegistry {
        registry: Registry {
            registry_id,
            url: req.url,
            host,
            description: req.description,
            username: Some(auth.username.clone()),
            created_at: 0,
            updated_at: 0,
        },
        credentials_sealed: seal(s, acct.acct_id, registry_id, &auth)?,
    };
    Ok(s.store
        .create_registry(acct.acct_id, &new, &acct.actor(), s.clock.now())
        .await?)
}

/// The account's registries (any member).
pub async fn list(s: &AppState, acct: &Acct) -> ServiceResult<Vec<Registry>> {
    Ok(s.store.list_registries(acct.acct_id).await?)
}

/// A registry of the account (any member).
pub async fn get(s: &AppState, acct: &Acct, registry_id: Uuid) -> ServiceResult<Registry> {
    s.store
        .get_registry(acct.acct_id, registry_id)
        .await?
        .ok_or(ServiceError::NotFound("registry"))
}

/// What a JSON Patch asks of a registry, checked.
fn patch_edit(
    s: &AppState,
    acct_id: Uuid,
    registry_id: Uuid,
    patch: &[PatchDocument],
) -> ServiceResult<RegistryEdit> {
    let mut c = Checker::new();
    let mut edit = RegistryEdit::default();
    if patch.is_empty() || patch.len() > 16 {
        c.err("patch", "give 1-16 operations");
    }
    for (i, p) in patch.iter().enumerate() {
        let field = format!("[{i}].value");
        let string = |c: &mut Checker| match &p.value {
            Some(serde_json::Value::String(v)) => Some(v.clone()),
            _ => {
                c.err(field.clone(), "must be a string");
                None
            }
        };
        match (p.op, p.path.as_str()) {
            (PatchOperation::Remove, "/description") => edit.description = Some(None),
            (PatchOperation::Remove, _) => {
                c.err(format!("[{i}].path"), "only /description can be removed")
            }
            (_, "/url") => {
                if let Some(url) = string(&mut c)
                    && let Some(host) = check_url(&mut c, &url)
                {
                    edit.url = Some((url, host));
                }
            }
            (_, "/description") => {
                if let Some(d) = string(&mut c) {
                    check_description(&mut c, Some(&d));
                    edit.description = Some(Some(d));
                }
            }
            (_, path @ ("/credential" | "/credential/default")) => {
                let value = p.value.clone().unwrap_or_default();
                let cred = if path == "/credential" {
                    serde_json::from_value::<RegistryCredential>(value)
                } else {
                    serde_json::from_value::<RegistryAuth>(value)
                        .map(|a| RegistryCredential { default: Some(a) })
                };
                match cred {
                    Ok(cred) => {
                        if let Some(auth) = check_credential(&mut c, &field, &cred) {
                            let sealed = seal(s, acct_id, registry_id, &auth)?;
                            edit.credentials = Some((auth.username, sealed));
                        }
                    }
                    Err(_) => c.err(
                        field.clone(),
                        "must be {\"username\", \"password\"} credentials",
                    ),
                }
            }
            _ => c.err(
                format!("[{i}].path"),
                "must be /url, /description, /credential or /credential/default",
            ),
        }
    }
    c.finish()?;
    Ok(edit)
}

/// Changes a registry with a JSON Patch (MANAGER only).
pub async fn update(
    s: &AppState,
    acct: &Acct,
    registry_id: Uuid,
    patch: Vec<PatchDocument>,
) -> ServiceResult<Registry> {
    acct.require(AccessRole::Manager)?;
    get(s, acct, registry_id).await?;
    let edit = patch_edit(s, acct.acct_id, registry_id, &patch)?;
    Ok(s.store
        .update_registry(
            acct.acct_id,
            registry_id,
            &edit,
            &acct.actor(),
            s.clock.now(),
        )
        .await?)
}

/// Deletes a registry (MANAGER only).
pub async fn delete(s: &AppState, acct: &Acct, registry_id: Uuid) -> ServiceResult<()> {
    acct.require(AccessRole::Manager)?;
    Ok(s.store
        .delete_registry(acct.acct_id, registry_id, &acct.actor(), s.clock.now())
        .await?)
}

/// The stored registry of an image reference's host, if any.
async fn registry_of(s: &AppState, acct_id: Uuid, image: &str) -> ServiceResult<Option<Registry>> {
    let Ok(r) = image.parse::<Reference>() else {
        return Ok(None);
    };
    Ok(s.store
        .registry_for_host(acct_id, &r.registry().to_ascii_lowercase())
        .await?
        .map(|(reg, _)| reg))
}

/// The stored registries an app's input and output images would use (any member).
pub async fn for_app(
    s: &AppState,
    acct: &Acct,
    app_id: Uuid,
) -> ServiceResult<AppRegistryResponse> {
    let app = s
        .store
        .get_app(acct.acct_id, app_id)
        .await?
        .ok_or(ServiceError::NotFound("app"))?;
    Ok(AppRegistryResponse {
        input_image_registry: registry_of(s, acct.acct_id, &app.input_image_name).await?,
        output_image_registry: registry_of(s, acct.acct_id, &app.output_image_name).await?,
    })
}

/// The stored registry an image reference would use (any member).
pub async fn for_image(
    s: &AppState,
    acct: &Acct,
    image_name: &str,
) -> ServiceResult<ImageRegistryResponse> {
    let mut c = Checker::new();
    c.image("image_name", image_name);
    c.finish()?;
    Ok(ImageRegistryResponse {
        registry: registry_of(s, acct.acct_id, image_name).await?,
    })
}

/// The stored credentials for an image registry host of an account, opened.
pub(crate) async fn credentials_for_host(
    s: &AppState,
    acct_id: Uuid,
    host: &str,
) -> ServiceResult<Option<(Registry, AuthConfig)>> {
    let Some((registry, sealed)) = s
        .store
        .registry_for_host(acct_id, &host.to_ascii_lowercase())
        .await?
    else {
        return Ok(None);
    };
    let plain = s
        .master_key
        .open(&credentials_context(acct_id, registry.registry_id), &sealed)?;
    let auth: AuthConfig = serde_json::from_slice(&plain).map_err(ServiceError::internal)?;
    Ok(Some((registry, auth)))
}
