//! `WWW-Authenticate` challenges and credentials.

use std::collections::BTreeMap;
use std::fmt;

/// A user name and password (or token) for a registry. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl Credentials {
    /// Parses `user:password` (the password may contain `:`).
    pub fn parse(s: &str) -> Option<Self> {
        let (u, p) = s.split_once(':')?;
        if u.is_empty() {
            return None;
        }
        Some(Credentials {
            username: u.to_owned(),
            password: p.to_owned(),
        })
    }

    /// The `Authorization: Basic ...` header value.
    pub(crate) fn basic_header(&self) -> String {
        use base64::Engine as _;
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// One authentication challenge from a `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercased (`basic`, `bearer`).
    pub scheme: String,
    /// Its parameters (`realm`, `service`, `scope`), keys lowercased.
    pub params: BTreeMap<String, String>,
}

/// Parses a `WWW-Authenticate` header value (RFC 7235: `scheme k=v, k="quoted \" v"`). Only the
/// first challenge is returned; malformed input gives `None`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let s = header.trim_start();
    let end = s.find(|c: char| c.is_ascii_whitespace()).unwrap_or(s.len());
    let scheme = s.get(..end)?.to_ascii_lowercase();
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return None;
    }
    let mut rest = s.get(end..)?.trim_start();
    let mut params = BTreeMap::new();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = rest.get(..eq)?.trim().to_ascii_lowercase();
        if key.is_empty() || key.contains(|c: char| c.is_ascii_whitespace() || c == ',') {
            // A second challenge ("Basic realm=x, Bearer ...") or garbage: stop here.
            break;
        }
        rest = rest.get(eq + 1..)?.trim_start();
        let value;
        if let Some(q) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut close = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => out.push(chars.next()?.1),
                    '"' => {
                        close = Some(i);
                        break;
                    }
                    c => out.push(c),
                }
            }
            rest = q.get(close? + 1..)?;
            value = out;
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest.get(..end)?.trim().to_owned();
            rest = rest.get(end..)?;
        }
        params.insert(key, value);
        rest = rest.trim_start();
        match rest.strip_prefix(',') {
            Some(r) => rest = r.trim_start(),
            None if rest.is_empty() => {}
            None => return None,
        }
    }
    Some(Challenge { scheme, params })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["scope"], "repository:library/ubuntu:pull");
        let c = parse_challenge(r#"Basic realm="Registry \"Realm\"""#).unwrap();
        assert_eq!(
            (c.scheme.as_str(), c.params["realm"].as_str()),
            ("basic", "Registry \"Realm\"")
        );
        let c = parse_challenge("Basic").unwrap();
        assert!(c.params.is_empty());
        let c = parse_challenge("bearer realm=http://x/token, service=x").unwrap();
        assert_eq!(c.params["service"], "x");
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for s in [
            "",
            "   ",
            "Bearer realm=\"unterminated",
            "Bearer realm=\"a\" junk",
            "Bé realm=x",
            "Bearer realm=\"\\",
        ] {
            assert!(parse_challenge(s).is_none(), "{s:?}");
        }
        let full = r#"Bearer realm="https://a/token",service="s",scope="repository:x:pull,push""#;
        for i in 0..full.len() {
            let _ = parse_challenge(&full[..i]);
        }
    }

    #[test]
    fn credentials() {
        let c = Credentials::parse("user:pa:ss").unwrap();
        assert_eq!(c.password, "pa:ss");
        assert!(!format!("{c:?}").contains("pa:ss"));
        assert!(Credentials::parse("nopass").is_none() && Credentials::parse(":x").is_none());
        assert_eq!(
            Credentials::parse("a:b").unwrap().basic_header(),
            "Basic YTpi"
        );
    }
}
