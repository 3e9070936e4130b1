//! Turning a conversion request into a queued job: validation, the app's settings, image
//! references, sealed credentials.

use ccm_api::apps::{App, CertificateConfig, CertificateIssuer, KeyType as ApiKeyType};
use ccm_api::builds::{
    AuthConfig, Build, BuildStatus, BuildStatusType, ConvertAppBuildRequest, DockerInfo,
    EnclaveInfo,
};
use ccm_enclave::{CertificateRequest, EnclaveParams, Issuer, KeyType};
use ccm_image::Reference;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::AppState;
use crate::secrets::credentials_context;
use crate::service::caller::Acct;
use crate::service::validate::{self, Checker};
use crate::service::{ServiceError, ServiceResult};

/// The job's settings, fixed at request time and stored with the job (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobSettings {
    /// Format version of this record.
    pub version: u32,
    /// ISVPRODID.
    pub isvprodid: u16,
    /// ISVSVN.
    pub isvsvn: u16,
    /// Enclave memory in MB.
    pub mem_size_mb: u64,
    /// Threads.
    pub threads: u32,
    /// Debug enclave.
    pub debug: bool,
    /// Certificates the launcher obtains (from the app's certificate configuration).
    pub certificates: Vec<CertificateRequest>,
}

/// Registry credentials as sealed in the job row.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobCredentials {
    pub input: Option<AuthConfig>,
    pub output: Option<AuthConfig>,
}

impl JobCredentials {
    /// Every secret string, for scrubbing messages.
    pub(crate) fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        for a in [&self.input, &self.output].into_iter().flatten() {
            out.push(format!("{}:{}", a.username, a.password));
            out.push(a.password.clone());
        }
        out
    }
}

/// Replaces every occurrence of a secret (at least 4 characters: shorter strings would mangle
/// ordinary text) and its Basic-auth encoding with `***`.
pub(crate) fn scrub(message: &str, secrets: &[String]) -> String {
    use base64::Engine as _;
    let mut out = message.to_owned();
    for s in secrets.iter().filter(|s| s.chars().count() >= 4) {
        out = out.replace(s.as_str(), "***");
        let b64 = base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        out = out.replace(&b64, "***");
    }
    out
}

fn key_type(k: ApiKeyType) -> KeyType {
    match k {
        ApiKeyType::Rsa2048 => KeyType::Rsa2048,
        ApiKeyType::Rsa3072 => KeyType::Rsa3072,
        ApiKeyType::EcP256 => KeyType::EcP256,
        ApiKeyType::EcP384 => KeyType::EcP384,
    }
}

/// The manifest's certificate request for the app's certificate configuration.
pub(crate) fn certificate_request(c: &CertificateConfig) -> CertificateRequest {
    CertificateRequest {
        domain: c.subject.clone(),
        key_type: key_type(c.key_type),
        key_path: c.key_path.clone(),
        cert_path: c.cert_path.clone(),
        chain_path: c.chain_path.clone(),
        issuer: match c.issuer {
            CertificateIssuer::ManagerCa => Issuer::ManagerCa,
        },
    }
}

pub(crate) fn check_auth(c: &mut Checker, field: &str, a: &Option<AuthConfig>) {
    let Some(a) = a else { return };
    // Messages never echo the values.
    let u = a.username.chars().count();
    if u == 0 || u > 256 {
        c.err(format!("{field}.username"), "must be 1-256 characters");
    } else if a.username.contains(':') || a.username.chars().any(char::is_control) {
        c.err(
            format!("{field}.username"),
            "must not contain ':' or control characters",
        );
    }
    let p = a.password.chars().count();
    if p == 0 || p > 4096 {
        c.err(format!("{field}.password"), "must be 1-4096 characters");
    } else if a.password.chars().any(char::is_control) {
        c.err(
            format!("{field}.password"),
            "must not contain control characters",
        );
    }
}

/// The repository part of a reference: `registry/repository`.
fn repository_name(r: &Reference) -> String {
    format!("{}/{}", r.registry(), r.repository())
}

/// Input and output references for the request (see [`ConvertAppBuildRequest`] for the rules).
fn references(app: &App, req: &ConvertAppBuildRequest) -> ServiceResult<(Reference, Reference)> {
    let parse = |what: &str, s: &str| {
        s.parse::<Reference>().map_err(|e| {
            ServiceError::Invalid(vec![ccm_api::FieldError {
                field: "app_id".into(),
                message: format!("the app's {what} cannot be converted: {e}"),
            }])
        })
    };
    let input = parse("input_image_name", &app.input_image_name)?;
    let output = parse("output_image_name", &app.output_image_name)?;
    let retag = |r: &Reference, field: &str, tag: &str| {
        r.with_tag(tag).map_err(|e| {
            ServiceError::Invalid(vec![ccm_api::FieldError {
                field: field.into(),
                message: e.to_string(),
            }])
        })
    };
    let input = match (&req.input_docker_version, &req.docker_version) {
        (Some(t), _) => retag(&input, "input_docker_version", t)?,
        _ if input.tag().is_some() || input.digest().is_some() => input,
        (None, Some(t)) => retag(&input, "docker_version", t)?,
        (None, None) => retag(&input, "docker_version", "latest")?,
    };
    let output = match (&req.output_docker_version, &req.docker_version) {
        (Some(t), _) => retag(&output, "output_docker_version", t)?,
        (None, Some(t)) => retag(&output, "docker_version", t)?,
        (None, None) if output.tag().is_some() && output.digest().is_none() => output,
        (None, None) => {
            return Err(ServiceError::Invalid(vec![ccm_api::FieldError {
                field: "docker_version".into(),
                message: "give the output image's tag in docker_version or output_docker_version"
                    .into(),
            }]));
        }
    };
    Ok((input, output))
}

/// The credentials of the input and output images (see [`ConvertAppBuildRequest`]): the
/// request's own first, else the account's stored registry for the image's host.
async fn credentials(
    s: &AppState,
    acct: &Acct,
    req: &ConvertAppBuildRequest,
    input: &Reference,
    output: &Reference,
) -> ServiceResult<(Option<AuthConfig>, Option<AuthConfig>)> {
    use crate::service::registries::credentials_for_host;
    if let Some(id) = req.registry_id {
        let r = s.store.get_registry(acct.acct_id, id).await?.ok_or(
            ServiceError::MissingReference {
                what: "registry",
                field: "registry_id",
            },
        )?;
        let on = |x: &Reference| x.registry().eq_ignore_ascii_case(&r.host);
        if !on(input) && !on(output) {
            return Err(ServiceError::Invalid(vec![ccm_api::FieldError {
                field: "registry_id".into(),
                message: format!(
                    "neither the input ({}) nor the output image ({}) is on this registry's host {}",
                    input.registry(),
                    output.registry(),
                    r.host
                ),
            }]));
        }
    }
    let stored = |x: &Reference| {
        let host = x.registry().to_owned();
        async move {
            credentials_for_host(s, acct.acct_id, &host)
                .await
                .map(|o| o.map(|(_, a)| a))
        }
    };
    let output_creds = match req.output_auth_config.clone().or(req.auth_config.clone()) {
        Some(a) => Some(a),
        None => stored(output).await?,
    };
    let input_creds = match req.input_auth_config.clone().or(req.auth_config.clone()) {
        Some(a) => Some(a),
        None => match stored(input).await? {
            Some(a) => Some(a),
            None => (input.api_host() == output.api_host())
                .then(|| output_creds.clone())
                .flatten(),
        },
    };
    Ok((input_creds, output_creds))
}

/// Validates a conversion request, records the image and queues its job; wakes the workers.
/// The caller has checked the WRITER role.
pub(crate) async fn create(
    s: &AppState,
    acct: &Acct,
    req: ConvertAppBuildRequest,
) -> ServiceResult<Build> {
    let mut c = Checker::new();
    for (field, v) in [
        ("docker_version", &req.docker_version),
        ("input_docker_version", &req.input_docker_version),
        ("output_docker_version", &req.output_docker_version),
    ] {
        if let Some(v) = v {
            validate::tag(&mut c, field, v);
        }
    }
    check_auth(&mut c, "inputAuthConfig", &req.input_auth_config);
    check_auth(&mut c, "outputAuthConfig", &req.output_auth_config);
    check_auth(&mut c, "authConfig", &req.auth_config);
    if let Some(m) = req.mem_size {
        c.range("memSize", m, 16, 262_144);
    }
    if let Some(t) = req.threads {
        c.range("threads", t, 1, i64::from(ccm_enclave::MAX_THREADS));
    }
    c.finish()?;
    let app =
        s.store
            .get_app(acct.acct_id, req.app_id)
            .await?
            .ok_or(ServiceError::MissingReference {
                what: "app",
                field: "app_id",
            })?;
    let mut c = Checker::new();
    if req.debug && !app.advanced_settings.allow_debug {
        c.err(
            "debug",
            "debug enclaves are not allowed for this app (set advanced_settings.allow_debug)",
        );
    }
    let mem_size = req.mem_size.unwrap_or(app.mem_size);
    let threads = req.threads.unwrap_or(app.threads);
    let isvprodid = u16::try_from(app.isvprodid);
    let isvsvn = u16::try_from(app.isvsvn);
    if isvprodid.is_err() || isvsvn.is_err() {
        c.err("app_id", "the app's isvprodid and isvsvn must be 0-65535");
    }
    let (mem_u64, threads_u32) = (u64::try_from(mem_size), u32::try_from(threads));
    match (mem_u64, threads_u32) {
        (Ok(m), Ok(t)) => {
            if let Err(e) = m
                .checked_mul(1 << 20)
                .ok_or_else(|| "is too large".to_owned())
                .and_then(|bytes| {
                    let params =
                        EnclaveParams::new(bytes, t, req.debug).map_err(|e| e.to_string())?;
                    // The threads must fit even before any file is counted (the image's files
                    // are checked during the conversion).
                    ccm_enclave::Layout::plan(0, &params, 0).map_err(|e| e.to_string())?;
                    Ok(())
                })
            {
                let field = match (req.mem_size, req.threads) {
                    (Some(_), _) => "memSize",
                    (None, Some(_)) => "threads",
                    (None, None) => "app_id",
                };
                c.err(
                    field,
                    format!("memory {mem_size} MB with {threads} threads: {e}"),
                );
            }
        }
        _ => c.err("memSize", "memory size and threads must be positive"),
    }
    c.finish()?;
    let (input, output) = references(&app, &req)?;

    let (input_creds, output_creds) = credentials(s, acct, &req, &input, &output).await?;
    let mut given = Vec::new();
    if input_creds.is_some() {
        given.push("input");
    }
    if output_creds.is_some() {
        given.push("output");
    }
    let build_id = Uuid::new_v4();
    let sealed = if input_creds.is_none() && output_creds.is_none() {
        None
    } else {
        let creds = JobCredentials {
            input: input_creds,
            output: output_creds,
        };
        let plain = Zeroizing::new(serde_json::to_vec(&creds).map_err(ServiceError::internal)?);
        Some(
            s.master_key
                .seal(&credentials_context(build_id), &plain)
                .map_err(ServiceError::internal)?,
        )
    };
    let settings = JobSettings {
        version: 1,
        isvprodid: isvprodid.unwrap_or(0),
        isvsvn: isvsvn.unwrap_or(0),
        mem_size_mb: mem_u64.unwrap_or(0),
        threads: threads_u32.unwrap_or(0),
        debug: req.debug,
        certificates: app.certificate.iter().map(certificate_request).collect(),
    };
    let now = s.clock.now();
    let build = Build {
        build_id,
        acct_id: acct.acct_id,
        app_id: app.app_id,
        app_name: app.name.clone(),
        docker_info: Some(DockerInfo {
            docker_image_name: repository_name(&output),
            docker_version: output.tag().unwrap_or("latest").to_owned(),
            docker_image_sha: None,
            docker_image_size: None,
        }),
        enclave_info: EnclaveInfo {
            mrenclave: String::new(),
            mrsigner: String::new(),
            isvprodid: app.isvprodid,
            isvsvn: app.isvsvn,
        },
        mem_size,
        threads,
        status: BuildStatus {
            status: BuildStatusType::Pending,
            status_updated_at: now,
        },
        pending_task_id: None,
        conversion: None,
        created_at: now,
        updated_at: now,
    };
    let new = ccm_store::NewConversion {
        build,
        input_image: input.to_string(),
        output_image: output.to_string(),
        settings: serde_json::to_string(&settings).map_err(ServiceError::internal)?,
        debug: req.debug,
        credentials_sealed: sealed,
        credentials_given: given,
    };
    let build = s.store.create_conversion(&new, &acct.actor(), now).await?;
    tracing::info!(
        build_id = %build.build_id,
        app_id = %app.app_id,
        input = %new.input_image,
        output = %new.output_image,
        "conversion queued"
    );
    s.conversions.wake();
    Ok(build)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(input: &str, output: &str) -> App {
        App {
            app_id: Uuid::nil(),
            acct_id: Uuid::nil(),
            name: "a".into(),
            description: None,
            input_image_name: input.into(),
            output_image_name: output.into(),
            isvprodid: 1,
            isvsvn: 1,
            mem_size: 64,
            threads: 4,
            allowed_domains: vec![],
            whitelisted_domains: vec![],
            pending_task_id: None,
            pending_policy_task_id: None,
            certificate: None,
            advanced_settings: Default::default(),
            labels: Default::default(),
            created_at: 0,
            updated_at: 0,
        }
    }

    fn req(
        common: Option<&str>,
        input: Option<&str>,
        output: Option<&str>,
    ) -> ConvertAppBuildRequest {
        ConvertAppBuildRequest {
            app_id: Uuid::nil(),
            docker_version: common.map(Into::into),
            input_docker_version: input.map(Into::into),
            output_docker_version: output.map(Into::into),
            input_auth_config: None,
            output_auth_config: None,
            auth_config: None,
            debug: false,
            mem_size: None,
            threads: None,
            registry_id: None,
        }
    }

    fn refs(a: &App, r: &ConvertAppBuildRequest) -> (String, String) {
        let (i, o) = references(a, r).unwrap();
        (i.to_string(), o.to_string())
    }

    #[test]
    fn tag_rules() {
        let a = app("r.test:5000/flask", "r.test:5000/flask-sgx");
        assert_eq!(
            refs(&a, &req(Some("1.0"), None, None)),
            (
                "r.test:5000/flask:1.0".into(),
                "r.test:5000/flask-sgx:1.0".into()
            )
        );
        assert_eq!(
            refs(&a, &req(Some("1.0"), Some("3.11"), Some("2"))),
            (
                "r.test:5000/flask:3.11".into(),
                "r.test:5000/flask-sgx:2".into()
            )
        );
        assert_eq!(
            refs(&a, &req(None, None, Some("2"))).0,
            "r.test:5000/flask:latest"
        );
        let pinned = app("r.test/flask:3.11", "r.test/flask-sgx:stable");
        assert_eq!(
            refs(&pinned, &req(Some("7"), None, None)),
            ("r.test/flask:3.11".into(), "r.test/flask-sgx:7".into())
        );
        assert_eq!(
            refs(&pinned, &req(None, None, None)).1,
            "r.test/flask-sgx:stable"
        );
        let field = |e: ServiceError| match e {
            ServiceError::Invalid(f) => f[0].field.clone(),
            other => panic!("{other:?}"),
        };
        let e = references(&a, &req(None, None, None)).unwrap_err();
        assert_eq!(field(e), "docker_version");
        let e = references(&a, &req(Some("bad tag"), None, None)).unwrap_err();
        assert_eq!(field(e), "docker_version");
    }

    #[test]
    fn scrub_hides_secrets_and_their_basic_encoding() {
        let creds = JobCredentials {
            input: None,
            output: Some(AuthConfig {
                username: "bob".into(),
                password: "hunter2-long".into(),
            }),
        };
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode("bob:hunter2-long");
        let msg = format!("x hunter2-long y bob:hunter2-long z {b64}");
        let out = scrub(&msg, &creds.secrets());
        assert!(!out.contains("hunter2") && !out.contains(&b64), "{out}");
        assert_eq!(scrub("a b c", &["ab".into()]), "a b c");
    }

    #[test]
    fn debug_output_hides_passwords() {
        let mut r = req(Some("1"), None, None);
        r.auth_config = Some(AuthConfig {
            username: "bob".into(),
            password: "hunter2-long".into(),
        });
        let text = format!("{r:?}");
        assert!(text.contains("bob") && !text.contains("hunter2"), "{text}");
    }
}
