//! The workers: a loop that recovers interrupted jobs and claims queued ones, and one task per
//! running job (conversion, heartbeat with progress, completion).

use std::sync::Arc;
use std::time::Duration;

use ccm_enclave::{EnclaveParams, SigningKey};
use ccm_image::oci::Platform;
use ccm_image::{
    ConvertSettings, Credentials, Destination, Location, Reference, Registries, RegistryOptions,
    Source,
};
use ccm_store::{Backend, ClaimedConversion, ConversionResult, Interrupted, Recovery};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use zeroize::Zeroizing;

use super::progress::Tracker;
use super::{LEASE_SECS, MAX_ATTEMPTS};
use crate::secrets::{credentials_context, signing_key_context};
use crate::service::conversions::request::{JobCredentials, JobSettings, scrub};
use crate::{AppState, Error};

/// How often the queue is looked at when nothing wakes the workers.
const POLL: Duration = Duration::from_secs(2);
/// How often a running job writes its progress (and so its heartbeat).
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a stopping manager waits for its jobs to be given back.
const RELEASE_WAIT: Duration = Duration::from_secs(10);
const MIB: u64 = 1 << 20;

/// Starts the conversion service of a manager: recovers jobs interrupted by an earlier run,
/// then serves the queue until `shutdown` turns true, when running jobs are given back.
pub fn spawn(state: AppState, shutdown: watch::Receiver<bool>) -> Result<JoinHandle<()>, Error> {
    let registries = Registries::new(&RegistryOptions {
        insecure: state.config.insecure_registries.clone(),
        extra_ca_file: state.config.registry_ca_file.clone(),
        only_extra_ca: false,
    })
    .map_err(|e| Error::Config {
        field: "registry_ca_file".into(),
        message: e.to_string(),
    })?;
    if state.config.conversion_workers > 0 {
        match state.config.launcher_path() {
            Ok(p) if p.is_file() => {}
            Ok(p) => tracing::warn!(
                launcher = %p.display(),
                "no launcher found: image conversions will fail until it exists (set `launcher` or CCM_LAUNCHER)"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot locate the launcher"),
        }
    }
    Ok(tokio::spawn(serve(state, registries, shutdown)))
}

async fn recover(state: &AppState, which: Interrupted<'_>) {
    match state
        .store
        .recover_conversions(which, MAX_ATTEMPTS, state.clock.now())
        .await
    {
        Ok(done) => {
            for (build_id, what) in done {
                match what {
                    Recovery::Requeued => {
                        state.metrics.conversion_ended("requeued", None);
                        tracing::info!(
                            %build_id, "conversion interrupted by a manager restart: queued again"
                        );
                    }
                    Recovery::Failed => {
                        state.metrics.conversion_ended("failed", None);
                        tracing::warn!(
                            %build_id, "conversion interrupted by manager restarts too often: failed"
                        );
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "recovering interrupted conversions failed"),
    }
}

async fn serve(state: AppState, registries: Registries, mut shutdown: watch::Receiver<bool>) {
    let queue = state.conversions.clone();
    let instance = queue.instance().to_owned();
    recover(&state, Interrupted::ClaimedBy(&instance)).await;
    if state.store.backend() == Backend::Sqlite {
        // One manager process owns an SQLite database: whatever is RUNNING was ours.
        recover(&state, Interrupted::All).await;
    }
    let workers = state.config.conversion_workers;
    let slots = Arc::new(Semaphore::new(workers));
    let mut jobs = JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        recover(
            &state,
            Interrupted::HeartbeatBefore(state.clock.now().saturating_sub(LEASE_SECS)),
        )
        .await;
        while let Ok(slot) = slots.clone().try_acquire_owned() {
            match state
                .store
                .claim_conversion(&instance, state.clock.now())
                .await
            {
                Ok(Some(job)) => {
                    jobs.spawn(run_job(
                        state.clone(),
                        registries.clone(),
                        job,
                        shutdown.clone(),
                        slot,
                    ));
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming a conversion failed");
                    break;
                }
            }
        }
        tokio::select! {
            () = queue.notified() => {}
            () = tokio::time::sleep(POLL) => {}
            Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
            changed = shutdown.changed() => if changed.is_err() { break },
        }
    }
    // The jobs watch the same signal and give their jobs back.
    let drain = async { while jobs.join_next().await.is_some() {} };
    if tokio::time::timeout(RELEASE_WAIT, drain).await.is_err() {
        tracing::warn!("conversions still stopping after {RELEASE_WAIT:?}; abandoning them");
        jobs.abort_all();
    }
}

enum End {
    Done(Result<ConversionResult, String>),
    Lost,
    Shutdown,
}

async fn run_job(
    state: AppState,
    registries: Registries,
    job: ClaimedConversion,
    mut shutdown: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let tracker = Arc::new(Tracker::new(state.clock.clone(), job.log.clone()));
    tracker.log(format!(
        "attempt {} of {MAX_ATTEMPTS} started on manager {}",
        job.attempt,
        state.conversions.instance()
    ));
    tracing::info!(build_id = %job.build_id, output = %job.output_image, attempt = job.attempt,
        "conversion started");
    let creds = open_credentials(&state, &job);
    let secrets = creds
        .as_ref()
        .ok()
        .and_then(|c| c.as_ref().map(JobCredentials::secrets))
        .unwrap_or_default();
    let started = std::time::Instant::now();
    let limit = Duration::from_secs(state.config.conversion_timeout_secs);
    let work = async {
        let creds = creds?;
        match tokio::time::timeout(limit, convert(&state, &registries, &job, creds, &tracker)).await
        {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {} s", limit.as_secs())),
        }
    };
    let end = tokio::select! {
        r = work => End::Done(r),
        () = heartbeat(&state, &job, &tracker) => End::Lost,
        _ = shutdown.wait_for(|stop| *stop) => End::Shutdown,
    };
    let now = state.clock.now();
    let (id, token) = (job.build_id, job.claim_token);
    let elapsed = Some(started.elapsed().as_secs_f64());
    match end {
        End::Done(Ok(result)) => {
            tracker.log(format!(
                "done: MRENCLAVE {}, MRSIGNER {}",
                result.mrenclave, result.mrsigner
            ));
            let last = tracker.snapshot();
            match state
                .store
                .complete_conversion(
                    id,
                    token,
                    &result,
                    &last.update(),
                    &crate::service::tasks::image_effect(ccm_api::tasks::ApprovalStatus::Approved),
                    now,
                )
                .await
            {
                Ok(true) => {
                    state.metrics.conversion_ended("succeeded", elapsed);
                    tracing::info!(build_id = %id, mrenclave = %result.mrenclave,
                        digest = %result.docker_image_sha, "conversion succeeded");
                }
                Ok(false) => tracing::info!(build_id = %id,
                    "conversion finished, but the image was deleted or the job was handed to another manager"),
                // The job stays RUNNING; once its heartbeat is stale it is queued again.
                Err(e) => tracing::error!(build_id = %id, error = %e,
                    "recording a conversion's result failed"),
            }
        }
        End::Done(Err(reason)) => {
            let reason = scrub(&reason, &secrets);
            tracker.log(format!("failed: {reason}"));
            let last = tracker.snapshot();
            match state
                .store
                .fail_conversion(id, token, &reason, &last.update(), now)
                .await
            {
                Ok(true) => {
                    state.metrics.conversion_ended("failed", elapsed);
                    tracing::warn!(build_id = %id, %reason, "conversion failed");
                }
                Ok(false) => tracing::info!(build_id = %id, %reason,
                    "conversion failed, but the image was deleted or the job was handed to another manager"),
                Err(e) => tracing::error!(build_id = %id, error = %e,
                    "recording a conversion's failure failed"),
            }
        }
        End::Lost => {
            state.metrics.conversion_ended("abandoned", None);
            tracing::info!(build_id = %id,
                "conversion abandoned: the image was deleted or the job was handed to another manager");
        }
        End::Shutdown => {
            tracker.log("the manager is stopping: the job goes back to the queue");
            state.metrics.conversion_ended("released", None);
            if let Err(e) = state
                .store
                .release_conversion(id, token, &tracker.log_lines(), now)
                .await
            {
                // Recovered at the next start (or by another replica once the lease expires).
                tracing::warn!(build_id = %id, error = %e, "giving a conversion back failed");
            }
        }
    }
    state.conversions.wake();
}

/// Writes the progress every second; returns when the claim no longer holds.
async fn heartbeat(state: &AppState, job: &ClaimedConversion, tracker: &Tracker) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = tracker.snapshot();
        match state
            .store
            .conversion_progress(
                job.build_id,
                job.claim_token,
                &s.update(),
                state.clock.now(),
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => tracing::warn!(build_id = %job.build_id, error = %e,
                "writing a conversion's progress failed"),
        }
    }
}

fn open_credentials(
    state: &AppState,
    job: &ClaimedConversion,
) -> Result<Option<JobCredentials>, String> {
    let Some(sealed) = &job.credentials_sealed else {
        return Ok(None);
    };
    let plain = state
        .master_key
        .open(&credentials_context(job.build_id), sealed)
        .map_err(|e| format!("the registry credentials cannot be opened: {e}"))?;
    serde_json::from_slice(&plain)
        .map(Some)
        .map_err(|_| "the stored registry credentials are malformed".to_owned())
}

fn credentials(a: Option<ccm_api::builds::AuthConfig>) -> Option<Credentials> {
    a.map(|a| Credentials {
        username: a.username,
        password: a.password,
    })
}

/// The account's signing key, generated (and stored sealed) on first use.
async fn signing_key(state: &AppState, acct_id: uuid::Uuid) -> Result<Arc<SigningKey>, String> {
    let context = signing_key_context(acct_id);
    let record = match state
        .store
        .signing_key(acct_id)
        .await
        .map_err(|e| format!("reading the account's signing key: {e}"))?
    {
        Some(r) => r,
        None => {
            let key = tokio::task::spawn_blocking(|| SigningKey::generate(&mut rand_core::OsRng))
                .await
                .map_err(|e| format!("generating the account's signing key: {e}"))?
                .map_err(|e| format!("generating the account's signing key: {e}"))?;
            let pem = key
                .to_pkcs8_pem()
                .map_err(|e| format!("encoding the signing key: {e}"))?;
            let sealed = state
                .master_key
                .seal(&context, pem.as_bytes())
                .map_err(|e| format!("sealing the signing key: {e}"))?;
            let record = state
                .store
                .insert_signing_key(
                    acct_id,
                    &sealed,
                    &key.mrsigner().to_string(),
                    state.clock.now(),
                )
                .await
                .map_err(|e| format!("storing the account's signing key: {e}"))?;
            tracing::info!(%acct_id, mrsigner = %record.mrsigner, "account signing key ready");
            record
        }
    };
    let pem = state
        .master_key
        .open(&context, &record.key_sealed)
        .map_err(|e| format!("opening the account's signing key: {e}"))?;
    let pem = Zeroizing::new(
        String::from_utf8(pem.to_vec()).map_err(|_| "the stored signing key is not PEM")?,
    );
    let key = SigningKey::from_pem(&pem).map_err(|e| format!("the stored signing key: {e}"))?;
    if key.mrsigner().to_string() != record.mrsigner {
        return Err("the stored signing key does not match its recorded MRSIGNER".into());
    }
    Ok(Arc::new(key))
}

fn registry_ref(what: &str, s: &str) -> Result<Reference, String> {
    s.parse::<Reference>()
        .map_err(|e| format!("the {what} image reference {s:?}: {e}"))
}

/// Runs `ccm_image::convert` on a blocking thread that drives it with the runtime's handle.
///
/// The compiler cannot prove `Send` for that future (its stream combinators hold higher-ranked
/// borrows, rust-lang/rust#102211), so it cannot be part of a spawned task; `Handle::block_on`
/// needs no `Send`. Dropping the returned future cancels the conversion (the blocking side
/// watches the dropped sender) instead of leaving it running.
async fn convert_detached(
    src: Source,
    dst: Destination,
    settings: ConvertSettings,
    tracker: Arc<Tracker>,
) -> Result<ccm_image::ConvertOutcome, String> {
    let handle = tokio::runtime::Handle::current();
    let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::task::spawn_blocking(move || {
        handle.block_on(async move {
            tokio::select! {
                r = ccm_image::convert(&src, &dst, &settings, tracker.as_ref()) => Some(r),
                _ = cancelled => None,
            }
        })
    });
    let result = task.await;
    drop(cancel);
    match result {
        Ok(Some(r)) => r.map_err(|e| e.to_string()),
        Ok(None) => Err("cancelled".into()),
        Err(e) => Err(format!("the conversion task failed: {e}")),
    }
}

/// Converts, pushes, and reads the result back.
async fn convert(
    state: &AppState,
    registries: &Registries,
    job: &ClaimedConversion,
    creds: Option<JobCredentials>,
    tracker: &Arc<Tracker>,
) -> Result<ConversionResult, String> {
    tracker.phase("preparing");
    let settings: JobSettings = serde_json::from_str(&job.settings)
        .map_err(|e| format!("the job's settings cannot be read: {e}"))?;
    let key = signing_key(state, job.acct_id).await?;
    tracker.log(format!(
        "signing with the account's key (MRSIGNER {})",
        key.mrsigner()
    ));
    let launcher_path = state.config.launcher_path().map_err(|e| e.to_string())?;
    let launcher = tokio::fs::read(&launcher_path).await.map_err(|e| {
        format!(
            "cannot read the launcher {}: {e} (set `launcher` in the manager configuration, or CCM_LAUNCHER)",
            launcher_path.display()
        )
    })?;
    let mem = settings
        .mem_size_mb
        .checked_mul(MIB)
        .ok_or("the memory size is too large")?;
    let enclave = EnclaveParams::new(mem, settings.threads, settings.debug)
        .map_err(|e| format!("enclave settings: {e}"))?;
    let convert_settings = ConvertSettings {
        enclave,
        isv_prod_id: settings.isvprodid,
        isv_svn: settings.isvsvn,
        entrypoint: None,
        args: None,
        allow_runtime_args: false,
        env: Vec::new(),
        passthrough_env: Vec::new(),
        certificates: settings.certificates.clone(),
        excluded_paths: Vec::new(),
        launcher: launcher.into(),
        launcher_version: env!("CARGO_PKG_VERSION").to_owned(),
        signing_key: key,
        platform: Platform::linux_amd64(),
    };
    let input = registry_ref("input", &job.input_image)?;
    let output = registry_ref("output", &job.output_image)?;
    let (in_creds, out_creds) = match creds {
        Some(c) => (credentials(c.input), credentials(c.output)),
        None => (None, None),
    };
    tracker.phase("resolving the input image");
    let src = Source::open(&Location::Registry(input), registries, in_creds)
        .await
        .map_err(|e| e.to_string())?;
    let dst = Destination::open(
        &Location::Registry(output.clone()),
        registries,
        out_creds.clone(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let outcome = convert_detached(src, dst, convert_settings, tracker.clone()).await?;
    tracker.log(format!("pushed {}@{}", outcome.reference, outcome.digest));

    // Read the result back from the registry: it exists, it is what we pushed, and its size.
    tracker.phase("verifying the output image");
    let check = Source::open(
        &Location::Registry(output.with_digest(outcome.digest)),
        registries,
        out_creds,
    )
    .await
    .map_err(|e| e.to_string())?;
    let pushed = check
        .resolve(&Platform::linux_amd64())
        .await
        .map_err(|e| format!("reading the pushed image back: {e}"))?;
    if pushed.manifest_digest != outcome.digest
        || pushed
            .manifest
            .annotations
            .get(ccm_image::convert::keys::MRENCLAVE)
            != Some(&outcome.mrenclave)
    {
        return Err(format!(
            "the registry returned a different image for {}@{}",
            outcome.reference, outcome.digest
        ));
    }
    let bytes = pushed
        .manifest
        .layers
        .iter()
        .map(|l| l.size)
        .fold(pushed.manifest.config.size, u64::saturating_add)
        .saturating_add(pushed.manifest_bytes.len() as u64);
    Ok(ConversionResult {
        docker_image_sha: outcome.digest.to_string(),
        docker_image_size: i64::try_from(bytes.div_ceil(MIB)).unwrap_or(i64::MAX),
        mrenclave: outcome.mrenclave,
        mrsigner: outcome.mrsigner,
    })
}
