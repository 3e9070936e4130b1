//! Image references with Docker's defaults, and image locations (registry, OCI layout, archive).
//!
//! `ubuntu` means `docker.io/library/ubuntu:latest`; the first path component is a registry host
//! when it contains `.` or `:` or is `localhost`, as in Docker.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::Error;

/// The registry Docker uses when a reference names none.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A registry image reference: `registry/repository[:tag][@digest]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// The registry as written (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host:port that serves the registry API (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The repository (`library/ubuntu`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest when given, otherwise the tag (default `latest`).
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, Error> {
        validate_tag(tag, tag)?;
        Ok(Reference {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same repository pinned to a digest (the tag is kept for display).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        if self.tag.is_none() && self.digest.is_none() {
            write!(f, ":latest")?;
        }
        Ok(())
    }
}

fn bad(input: &str, reason: &'static str) -> Error {
    Error::InvalidReference {
        input: input.to_owned(),
        reason,
    }
}

fn validate_tag(input: &str, tag: &str) -> Result<(), Error> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_alphanumeric() || b == b'_' || (i > 0 && (b == b'.' || b == b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(bad(
            input,
            "tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}",
        ))
    }
}

fn validate_repository(input: &str, repo: &str) -> Result<(), Error> {
    if repo.is_empty() || repo.len() > 255 {
        return Err(bad(
            input,
            "repository name is empty or longer than 255 characters",
        ));
    }
    for component in repo.split('/') {
        let bytes = component.as_bytes();
        let starts_ends_alnum = matches!(bytes.first(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit())
            && matches!(bytes.last(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit());
        let chars_ok = bytes.iter().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
        if !starts_ends_alnum || !chars_ok {
            return Err(bad(
                input,
                "repository components must be lowercase letters and digits separated by '.', '_' or '-'",
            ));
        }
    }
    Ok(())
}

fn validate_registry(input: &str, host: &str) -> Result<(), Error> {
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if ok {
        Ok(())
    } else {
        Err(bad(input, "registry host contains invalid characters"))
    }
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self, Error> {
        let s = input.strip_prefix("docker://").unwrap_or(input);
        if s.is_empty() {
            return Err(bad(input, "empty reference"));
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(d.parse::<Digest>()?)),
            None => (s, None),
        };
        // A ':' after the last '/' separates the tag (a ':' before it belongs to host:port).
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag.get(last_slash..).and_then(|tail| tail.rfind(':')) {
            Some(i) => {
                let split = last_slash + i;
                (
                    name_tag.get(..split).unwrap_or(""),
                    name_tag.get(split + 1..).map(str::to_owned),
                )
            }
            None => (name_tag, None),
        };
        if let Some(t) = &tag {
            validate_tag(input, t)?;
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_owned()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        validate_registry(input, &registry)?;
        validate_repository(input, &repository)?;
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

/// Where an image lives: a registry, a local OCI image layout directory, or a `docker save`
/// archive. Written as `REF` / `docker://REF`, `oci:DIR[:NAME]`, `docker-archive:FILE[:NAME]`
/// (the same transport names as skopeo; the path ends at the first `:`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// An image in a registry.
    Registry(Reference),
    /// An OCI image layout directory; `name` selects a manifest by its
    /// `org.opencontainers.image.ref.name` annotation (the only manifest when absent).
    OciLayout {
        /// The layout directory.
        dir: PathBuf,
        /// The ref name, if given.
        name: Option<String>,
    },
    /// A `docker save` archive; `name` selects an image by repo tag (the only image when absent).
    DockerArchive {
        /// The archive file.
        path: PathBuf,
        /// The repo tag, if given.
        name: Option<String>,
    },
}

/// Splits `PATH[:NAME]` at the first `:` (as skopeo does; the name may itself contain `:`).
fn split_path_name(rest: &str) -> (PathBuf, Option<String>) {
    match rest.split_once(':') {
        Some((path, name)) if !path.is_empty() && !name.is_empty() => {
            (PathBuf::from(path), Some(name.to_owned()))
        }
        _ => (PathBuf::from(rest.trim_end_matches(':')), None),
    }
}

impl FromStr for Location {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self, Error> {
        if let Some(rest) = input.strip_prefix("oci:") {
            if rest.is_empty() {
                return Err(bad(input, "oci: needs a directory"));
            }
            let (dir, name) = split_path_name(rest);
            return Ok(Location::OciLayout { dir, name });
        }
        if let Some(rest) = input.strip_prefix("docker-archive:") {
            if rest.is_empty() {
                return Err(bad(input, "docker-archive: needs a file"));
            }
            let (path, name) = split_path_name(rest);
            return Ok(Location::DockerArchive { path, name });
        }
        Ok(Location::Registry(input.parse()?))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Registry(r) => write!(f, "{r}"),
            Location::OciLayout { dir, name } => {
                write!(f, "oci:{}", dir.display())?;
                name.as_ref().map_or(Ok(()), |n| write!(f, ":{n}"))
            }
            Location::DockerArchive { path, name } => {
                write!(f, "docker-archive:{}", path.display())?;
                name.as_ref().map_or(Ok(()), |n| write!(f, ":{n}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        s.parse().unwrap()
    }

    #[test]
    fn docker_defaults() {
        let x = r("ubuntu");
        assert_eq!(
            (x.registry(), x.repository(), x.tag()),
            ("docker.io", "library/ubuntu", None)
        );
        assert_eq!(x.manifest_ref(), "latest");
        assert_eq!(x.api_host(), "registry-1.docker.io");
        assert_eq!(x.to_string(), "docker.io/library/ubuntu:latest");
        assert_eq!(r("bitnami/redis:7").repository(), "bitnami/redis");
        assert_eq!(r("index.docker.io/library/alpine").registry(), "docker.io");
    }

    #[test]
    fn hosts_ports_tags_digests() {
        let x = r("localhost:5000/team/app:v1.2");
        assert_eq!(
            (x.registry(), x.repository(), x.tag()),
            ("localhost:5000", "team/app", Some("v1.2"))
        );
        let x = r("127.0.0.1:5000/app");
        assert_eq!((x.registry(), x.tag()), ("127.0.0.1:5000", None));
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let x = r(&format!("quay.io/org/app:1@{d}"));
        assert_eq!(x.manifest_ref(), d);
        assert_eq!(x.tag(), Some("1"));
        assert_eq!(r("docker://localhost/a").registry(), "localhost");
    }

    #[test]
    fn rejects_bad_references() {
        for s in [
            "",
            "Ubuntu",
            "localhost:5000/",
            "a//b",
            "app:",
            "app:-x",
            "app@sha256:12",
            "a/b:c:d",
            "-a",
        ] {
            assert!(
                matches!(
                    s.parse::<Reference>(),
                    Err(Error::InvalidReference { .. } | Error::InvalidDigest(_))
                ),
                "{s}"
            );
        }
    }

    #[test]
    fn locations() {
        assert_eq!(
            "oci:/tmp/layout:v1".parse::<Location>().unwrap(),
            Location::OciLayout {
                dir: "/tmp/layout".into(),
                name: Some("v1".into())
            }
        );
        assert_eq!(
            "docker-archive:img.tar".parse::<Location>().unwrap(),
            Location::DockerArchive {
                path: "img.tar".into(),
                name: None
            }
        );
        assert!(matches!(
            "localhost:5000/x".parse::<Location>().unwrap(),
            Location::Registry(_)
        ));
        assert_eq!(
            "docker-archive:/a/b.tar:example.test/team/app:1"
                .parse::<Location>()
                .unwrap(),
            Location::DockerArchive {
                path: "/a/b.tar".into(),
                name: Some("example.test/team/app:1".into())
            }
        );
    }
}
