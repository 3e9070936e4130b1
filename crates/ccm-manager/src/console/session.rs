//! Console sessions and CSRF protection.
//!
//! **Sessions.** Logging in through the console opens a session in the same store as the API's
//! bearer tokens (`sessions` table, [`crate::routes::sys::password_login`]); the console keeps
//! the token in a cookie instead of an `Authorization` header. The cookie is `HttpOnly`,
//! `SameSite=Strict`, `Path=/`, and — when the manager serves HTTPS — `Secure` with the
//! `__Host-` name prefix (so no subdomain can set or shadow it). The token inside expires after
//! the token lifetime; while the user is active the middleware rotates it once half of that
//! lifetime has passed (never beyond the session's end), so an idle console logs out after the
//! token lifetime and an active one at the session's end. A session cookie never authenticates
//! an API call: the API reads only the `Authorization` header, so the API cannot be driven by a
//! cross-site form.
//!
//! **CSRF.** Every form carries a `_csrf` field checked before any handler code runs
//! ([`Posted`]). Signed-in users get HMAC-SHA256(K, "session\0" ‖ session id): bound to their
//! session, stable across token rotation, and impossible to compute without K. The login and
//! sign-up forms, which have no session yet, use the signed double-submit pattern: a random
//! `pre` cookie and HMAC(K, "pre\0" ‖ cookie). K is 32 random bytes made on first use, sealed
//! with the master key and kept in the database (`meta`), so every replica and every restart
//! accepts the same tokens.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use ccm_api::auth::SESSION_TOKEN_PREFIX;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::OnceCell;

use super::ConsoleError;
use super::form::FormData;
use crate::AppState;
use crate::auth::{Acct, Caller, CallerAuth};
use crate::error::ApiError;
use crate::service::{self, ServiceError};

/// `meta` key of the sealed console key.
const KEY_META: &str = "console_csrf_key";
/// Sealing context of the console key.
const KEY_CONTEXT: &str = "console-csrf-key";

/// Per-manager console state (lazily loaded key).
#[derive(Debug, Default)]
pub(crate) struct ConsoleKeys {
    key: OnceCell<hmac::Key>,
}

impl ConsoleKeys {
    /// The CSRF key: created, sealed and stored on first use; read back by every replica.
    async fn key(&self, s: &AppState) -> Result<&hmac::Key, ApiError> {
        self.key
            .get_or_try_init(|| async {
                let raw = service::system::shared_secret(s, KEY_META, KEY_CONTEXT).await?;
                Ok::<_, ApiError>(hmac::Key::new(hmac::HMAC_SHA256, &raw))
            })
            .await
    }
}

/// Cookie names; `__Host-` prefixed when served over HTTPS.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CookieNames {
    /// Whether cookies are `Secure`.
    pub(crate) secure: bool,
}

impl CookieNames {
    pub(crate) fn session(self) -> &'static str {
        if self.secure {
            "__Host-ccm_session"
        } else {
            "ccm_session"
        }
    }

    pub(crate) fn pre(self) -> &'static str {
        if self.secure {
            "__Host-ccm_pre"
        } else {
            "ccm_pre"
        }
    }

    pub(crate) fn flash(self) -> &'static str {
        if self.secure {
            "__Host-ccm_flash"
        } else {
            "ccm_flash"
        }
    }

    /// A `Set-Cookie` value. `max_age` `0` deletes the cookie.
    pub(crate) fn cookie(self, name: &str, value: &str, max_age: i64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let v = format!(
            "{name}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
            max_age.max(0)
        );
        // Names and values are ASCII made here (base64url tokens, percent-encoded text).
        HeaderValue::from_str(&v)
            .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
    }
}

/// What the middleware learned about the request, for the extractors.
#[derive(Debug, Clone)]
pub(crate) struct ConsoleAuth {
    /// The signed-in user, if any.
    pub(crate) caller: Option<Caller>,
    /// The CSRF token to put into forms.
    pub(crate) csrf: String,
    /// A one-shot message from the previous request (post/redirect/get).
    pub(crate) flash: Option<String>,
    /// Cookie naming.
    pub(crate) names: CookieNames,
    csrf_key: hmac::Key,
    csrf_message: Vec<u8>,
}

impl ConsoleAuth {
    /// Checks a submitted CSRF token (constant time).
    pub(crate) fn csrf_ok(&self, submitted: Option<&str>) -> bool {
        submitted
            .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok())
            .is_some_and(|tag| hmac::verify(&self.csrf_key, &self.csrf_message, &tag).is_ok())
    }
}

/// Parses a `Cookie` header into (name, value) pairs.
fn cookies(parts: &axum::http::HeaderMap) -> Vec<(String, String)> {
    parts
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn cookie<'a>(all: &'a [(String, String)], name: &str) -> Option<&'a str> {
    all.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn random_b64(len: usize) -> Result<String, ApiError> {
    let mut b = vec![0u8; len];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| ApiError::internal("no randomness"))?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}

/// Percent-encodes a flash message for its cookie.
pub(crate) fn encode_flash(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes().take(300) {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode_flash(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok().filter(|s| !s.is_empty())
}

/// The console middleware: resolves the session cookie (rotating its token when due), prepares
/// the CSRF token and the flash message, and adds the console's response headers.
pub(crate) async fn middleware(
    State(s): State<AppState>,
    axum::Extension(keys): axum::Extension<Arc<ConsoleKeys>>,
    mut req: Request,
    next: Next,
) -> Response {
    let names = CookieNames {
        secure: !s.config.insecure_http,
    };
    let mut set_cookies: Vec<HeaderValue> = Vec::new();
    let headers = req.headers().clone();
    let prepared = prepare(&s, &keys, &headers, names, &mut set_cookies).await;
    let had_flash = cookies(&headers).iter().any(|(n, _)| n == names.flash());
    let mut resp = match prepared {
        Ok(auth) => {
            req.extensions_mut().insert(auth);
            next.run(req).await
        }
        Err(e) => axum::response::IntoResponse::into_response(ConsoleError::Api(e)),
    };
    // A one-shot message is spent by the page that shows it, not by a redirect on the way.
    if had_flash && !resp.status().is_redirection() {
        set_cookies.push(names.cookie(names.flash(), "", 0));
    }
    let h = resp.headers_mut();
    for c in set_cookies {
        h.append(SET_COOKIE, c);
    }
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("x-frame-options", "DENY"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    if !h.contains_key("cache-control") {
        h.insert("cache-control", HeaderValue::from_static("no-store"));
    }
    resp
}

async fn prepare(
    s: &AppState,
    keys: &ConsoleKeys,
    headers: &axum::http::HeaderMap,
    names: CookieNames,
    set_cookies: &mut Vec<HeaderValue>,
) -> Result<ConsoleAuth, ApiError> {
    let key = keys.key(s).await?.clone();
    let jar = cookies(headers);
    let now = s.clock.now();
    let mut caller = None;
    if let Some(token) = cookie(&jar, names.session()) {
        match session_caller(s, token).await {
            Ok(Some(c)) => caller = Some(rotate_if_due(s, c, names, now, set_cookies).await?),
            Ok(None) => set_cookies.push(names.cookie(names.session(), "", 0)),
            Err(e) => return Err(e),
        }
    }
    let flash = cookie(&jar, names.flash()).and_then(decode_flash);
    let csrf_message = match &caller {
        Some(Caller {
            auth: CallerAuth::Session { session, .. },
            ..
        }) => format!("session\0{}", session.session_id).into_bytes(),
        _ => {
            let pre = match cookie(&jar, names.pre()) {
                Some(p) if p.len() >= 22 && p.len() <= 64 => p.to_string(),
                _ => {
                    let p = random_b64(18)?;
                    set_cookies.push(names.cookie(names.pre(), &p, 86_400));
                    p
                }
            };
            format!("pre\0{pre}").into_bytes()
        }
    };
    let csrf = URL_SAFE_NO_PAD.encode(hmac::sign(&key, &csrf_message).as_ref());
    Ok(ConsoleAuth {
        caller,
        csrf,
        flash,
        names,
        csrf_key: key,
        csrf_message,
    })
}

/// The caller of a session cookie; `None` when it is not (or no longer) a valid session token.
/// Database failures are errors, not a logout.
async fn session_caller(s: &AppState, token: &str) -> Result<Option<Caller>, ApiError> {
    if !token.starts_with(SESSION_TOKEN_PREFIX) {
        return Ok(None);
    }
    match Caller::from_token(s, token).await {
        Ok(c) => Ok(Some(c)),
        Err(crate::service::ServiceError::Unauthenticated { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Replaces the session's token when half its lifetime has passed and the session lasts longer.
async fn rotate_if_due(
    s: &AppState,
    mut caller: Caller,
    names: CookieNames,
    now: i64,
    set_cookies: &mut Vec<HeaderValue>,
) -> Result<Caller, ApiError> {
    let actor = caller.actor();
    let CallerAuth::Session {
        session,
        token_hash,
    } = &mut caller.auth
    else {
        return Ok(caller);
    };
    if !service::auth::rotation_due(session, s.config.token_ttl_secs, now) {
        return Ok(caller);
    }
    // Of two requests rotating at once, one wins; the other keeps working with its (still valid)
    // token and sets no cookie, so the browser ends up with the winner's token.
    if let Some((token, updated)) =
        service::auth::rotate_token(s, session, token_hash, &actor).await?
    {
        set_cookies.push(names.cookie(
            names.session(),
            &token,
            updated.session_expires_at.saturating_sub(now),
        ));
        *token_hash = crate::auth::token_hash(&token);
        *session = updated;
    }
    Ok(caller)
}

impl FromRequestParts<AppState> for ConsoleAuth {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<ConsoleAuth>()
            .cloned()
            .ok_or_else(|| ConsoleError::Api(ApiError::internal("console middleware missing")))
    }
}

/// A signed-in console user.
#[derive(Debug, Clone)]
pub(crate) struct Authed {
    /// The user.
    pub(crate) caller: Caller,
    /// Session, CSRF token and flash.
    pub(crate) auth: ConsoleAuth,
}

fn login_redirect(parts: &Parts) -> ConsoleError {
    let next = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .filter(|p| parts.method == axum::http::Method::GET && safe_next(p))
        .unwrap_or_default();
    ConsoleError::Login { next }
}

/// Whether `next` is a console path to return to after login (no open redirects).
pub(crate) fn safe_next(next: &str) -> bool {
    next.starts_with("/console")
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.len() <= 512
        && next.bytes().all(|b| b.is_ascii_graphic())
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let auth = ConsoleAuth::from_request_parts(parts, state).await?;
        match auth.caller.clone() {
            Some(caller) => Ok(Authed { caller, auth }),
            None => Err(login_redirect(parts)),
        }
    }
}

/// A signed-in user working in their selected account.
#[derive(Debug, Clone)]
pub(crate) struct InAccount {
    /// The account context (role included).
    pub(crate) acct: Acct,
    /// Session, CSRF token and flash.
    pub(crate) auth: ConsoleAuth,
}

impl FromRequestParts<AppState> for InAccount {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Authed { caller, auth } = Authed::from_request_parts(parts, state).await?;
        match Acct::of(caller, state).await {
            Ok(acct) => Ok(InAccount { acct, auth }),
            Err(ServiceError::BadRequest { .. } | ServiceError::Forbidden(_)) => {
                Err(ConsoleError::NoAccount)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// A submitted form whose CSRF token has been checked. Anything but
/// `application/x-www-form-urlencoded` is refused (415), as is a missing or wrong token (403);
/// either way before the handler runs, so nothing changes.
#[derive(Debug)]
pub(crate) struct Posted(pub(crate) FormData);

impl FromRequest<AppState> for Posted {
    type Rejection = ConsoleError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let auth = req
            .extensions()
            .get::<ConsoleAuth>()
            .cloned()
            .ok_or_else(|| ConsoleError::Api(ApiError::internal("console middleware missing")))?;
        let is_form = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !is_form {
            return Err(ConsoleError::Api(
                ApiError::unsupported_media_type().with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE),
            ));
        }
        let body = Bytes::from_request(req, state).await.map_err(|_| {
            ConsoleError::Api(ApiError::bad_request(
                "invalid_body",
                "the form could not be read",
            ))
        })?;
        let form = FormData::parse(&body).map_err(ConsoleError::Api)?;
        if !auth.csrf_ok(form.get("_csrf")) {
            return Err(ConsoleError::Csrf);
        }
        Ok(Posted(form))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flash_round_trips_any_text() {
        for t in ["Application \"x\" created.", "ümlaut; = , % done", "a"] {
            assert_eq!(decode_flash(&encode_flash(t)).as_deref(), Some(t));
        }
        assert_eq!(decode_flash("%zz"), None);
        assert_eq!(decode_flash("%4"), None);
        assert_eq!(decode_flash(""), None);
    }

    #[test]
    fn next_must_stay_in_the_console() {
        assert!(safe_next("/console/apps?page=2"));
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/v1/apps",
            "/console\\..\\x",
            "/console/a b",
        ] {
            assert!(!safe_next(bad), "{bad}");
        }
    }

    #[test]
    fn cookies_parse_and_attributes() {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("a=1; ccm_session=ccmst1_x;b=2"),
        );
        let jar = cookies(&h);
        assert_eq!(cookie(&jar, "ccm_session"), Some("ccmst1_x"));
        assert_eq!(cookie(&jar, "c"), None);
        let c = CookieNames { secure: true }.cookie("__Host-ccm_session", "v", 60);
        assert_eq!(
            c.to_str().unwrap(),
            "__Host-ccm_session=v; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
        let c = CookieNames { secure: false }.cookie("ccm_session", "", -5);
        assert_eq!(
            c.to_str().unwrap(),
            "ccm_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
        );
    }
}
