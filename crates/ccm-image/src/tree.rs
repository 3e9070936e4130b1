//! The file tree that results from applying layers in order.
//!
//! The tree is a model: a sorted map from canonical path (no leading `/`, no symlink in any parent
//! component) to metadata, with each regular file's size and SHA-256 when it was hashed. Conversion
//! never writes the input image to disk: it only needs this model to list the trusted files.
//! Extraction to disk (`ccm run`) drives the same model and mirrors the [`Action`]s it returns, so
//! both paths share one implementation of the layer semantics:
//!
//! * entries named with a `..` component are refused;
//! * parents are resolved through symlinks *inside the image root* (an absolute target starts at
//!   the root); a resolution that would climb above the root is refused, as is a symlink loop;
//! * `.wh.NAME` deletes `NAME` from lower layers, `.wh..wh..opq` hides everything lower layers put
//!   in its directory; entries of the same layer are never hidden by its own whiteouts (OCI image
//!   spec, "Whiteouts");
//! * a hard link becomes a second name for its target's content and metadata.

use std::collections::{BTreeMap, HashSet};

use crate::error::LayerError;

/// Upper bound on symlinks followed while resolving one path (Linux's `MAXSYMLINKS` is 40).
const MAX_SYMLINKS: usize = 40;

/// Kind-specific data of a tree node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// A directory.
    Dir,
    /// A regular file.
    File {
        /// Size in bytes.
        size: u64,
        /// SHA-256 of the content, when the layer was hashed.
        sha256: Option<[u8; 32]>,
    },
    /// A symbolic link.
    Symlink {
        /// The link target, as stored.
        target: String,
    },
    /// A device node or FIFO (kept in the model, never measured or created on disk).
    Special,
}

/// A node of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// What it is.
    pub kind: NodeKind,
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
}

/// One entry of a layer, as read from its tar stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The name as stored in the archive.
    pub path: String,
    /// What it creates.
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
}

/// Kind-specific data of a layer entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file.
    File {
        /// Size in bytes.
        size: u64,
        /// SHA-256 of the content, when hashed.
        sha256: Option<[u8; 32]>,
    },
    /// A symbolic link.
    Symlink {
        /// Its target.
        target: String,
    },
    /// A hard link to another entry of this or a lower layer.
    HardLink {
        /// The linked entry's name.
        target: String,
    },
    /// A device node or FIFO.
    Special,
}

/// What applying an entry did, in order, for a caller that mirrors the tree on disk. Paths are
/// canonical (relative to the root, symlink-free parents).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Remove this path (and everything below it).
    Remove(String),
    /// Create this directory if missing, then set its metadata.
    Dir {
        /// The directory.
        path: String,
        /// Permission bits.
        mode: u32,
        /// Owner.
        uid: u64,
        /// Group.
        gid: u64,
    },
    /// Create this regular file from the entry's content (the path is free).
    File {
        /// The file.
        path: String,
        /// Permission bits.
        mode: u32,
        /// Owner.
        uid: u64,
        /// Group.
        gid: u64,
    },
    /// Create a symlink (the path is free).
    Symlink {
        /// The link.
        path: String,
        /// Its target.
        target: String,
        /// Owner.
        uid: u64,
        /// Group.
        gid: u64,
    },
    /// Create a hard link to an existing canonical path (the path is free).
    HardLink {
        /// The new name.
        path: String,
        /// The existing file.
        target: String,
    },
    /// A device node or FIFO, which is not created.
    Special(String),
}

/// The file tree built by applying layers bottom to top.
#[derive(Clone, Debug, Default)]
pub struct FileTree {
    nodes: BTreeMap<String, Node>,
    /// Canonical paths created or modified by the current layer, with their ancestors.
    touched: HashSet<String>,
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

fn parent_of(path: &str) -> &str {
    path.rfind('/').map_or("", |i| path.get(..i).unwrap_or(""))
}

/// Splits an archive name into components: leading `/` and `./`, empty and `.` components are
/// dropped; `..` is refused.
pub fn normalize(path: &str) -> Result<Vec<&str>, LayerError> {
    let mut out = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(LayerError::DotDot {
                    path: path.to_owned(),
                });
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

impl FileTree {
    /// An empty tree (just the root directory).
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a new layer: whiteouts from now on hide only what earlier layers created.
    pub fn begin_layer(&mut self) {
        self.touched.clear();
    }

    /// The node at a canonical path (`"usr/bin/env"`), if any.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// All nodes in path order (canonical paths, no leading `/`).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of nodes (the root is not counted).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn touch(&mut self, path: &str) {
        let mut p = path;
        while !p.is_empty() && self.touched.insert(p.to_owned()) {
            p = parent_of(p);
        }
    }

    /// Removes `path` and its subtree from the model; returns whether anything was there.
    fn remove_subtree(&mut self, path: &str) -> bool {
        let existed = self.nodes.remove(path).is_some();
        let prefix = format!("{path}/");
        let below: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &below {
            self.nodes.remove(k);
        }
        existed || !below.is_empty()
    }

    /// Resolves directory components to a canonical directory path. With `create`, missing
    /// directories are created (0755, root-owned) and reported; without, `None` means a component
    /// is missing.
    fn resolve_dir(
        &mut self,
        entry: &str,
        components: &[&str],
        create: bool,
        actions: &mut Vec<Action>,
    ) -> Result<Option<String>, LayerError> {
        let mut stack: Vec<String> = components.iter().rev().map(|c| (*c).to_owned()).collect();
        let mut cur = String::new();
        let mut followed = 0usize;
        let mut last_link: Option<(String, String)> = None;
        while let Some(comp) = stack.pop() {
            match comp.as_str() {
                "" | "." => continue,
                ".." => {
                    if cur.is_empty() {
                        let (symlink, target) = last_link.clone().unwrap_or_default();
                        return Err(LayerError::EscapesRoot {
                            path: entry.to_owned(),
                            symlink: format!("/{symlink}"),
                            target,
                        });
                    }
                    cur = parent_of(&cur).to_owned();
                    continue;
                }
                _ => {}
            }
            let candidate = join(&cur, &comp);
            match self.nodes.get(&candidate).map(|n| &n.kind) {
                None if create => {
                    self.nodes.insert(
                        candidate.clone(),
                        Node {
                            kind: NodeKind::Dir,
                            mode: 0o755,
                            uid: 0,
                            gid: 0,
                        },
                    );
                    actions.push(Action::Dir {
                        path: candidate.clone(),
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                    });
                    cur = candidate;
                }
                None => return Ok(None),
                Some(NodeKind::Dir) => cur = candidate,
                Some(NodeKind::Symlink { target }) => {
                    followed += 1;
                    if followed > MAX_SYMLINKS {
                        return Err(LayerError::SymlinkLoop {
                            path: entry.to_owned(),
                        });
                    }
                    let target = target.clone();
                    if target.starts_with('/') {
                        cur.clear();
                    }
                    stack.extend(target.split('/').rev().map(str::to_owned));
                    last_link = Some((candidate, target));
                }
                Some(_) => {
                    return Err(LayerError::NotADirectory {
                        path: entry.to_owned(),
                        parent: format!("/{candidate}"),
                    });
                }
            }
        }
        Ok(Some(cur))
    }

    /// Applies all entries of one layer (scanned with [`crate::layer::scan_layer`]) in order.
    pub fn apply_layer(&mut self, entries: &[Entry]) -> Result<(), LayerError> {
        self.begin_layer();
        for e in entries {
            self.apply(e)?;
        }
        Ok(())
    }

    /// Applies one entry of the current layer; returns the on-disk actions it implies.
    pub fn apply(&mut self, entry: &Entry) -> Result<Vec<Action>, LayerError> {
        let comps = normalize(&entry.path)?;
        let Some((base, parents)) = comps.split_last() else {
            // The root directory itself ("./"): nothing to record.
            return Ok(Vec::new());
        };
        let mut actions = Vec::new();
        if let Some(hidden) = base.strip_prefix(".wh.") {
            self.apply_whiteout(entry, parents, hidden, &mut actions)?;
            return Ok(actions);
        }
        let dir = self
            .resolve_dir(&entry.path, parents, true, &mut actions)?
            .unwrap_or_default();
        let path = join(&dir, base);
        let existing_is_dir = matches!(
            self.nodes.get(&path),
            Some(Node {
                kind: NodeKind::Dir,
                ..
            })
        );
        let (uid, gid, mode) = (entry.uid, entry.gid, entry.mode & 0o7777);
        let node_kind = match &entry.kind {
            EntryKind::Dir => {
                if !existing_is_dir && self.remove_subtree(&path) {
                    actions.push(Action::Remove(path.clone()));
                }
                actions.push(Action::Dir {
                    path: path.clone(),
                    mode,
                    uid,
                    gid,
                });
                NodeKind::Dir
            }
            EntryKind::HardLink { target } => {
                let resolved = self.resolve_existing(&entry.path, target)?;
                let node = match resolved
                    .as_ref()
                    .and_then(|p| self.nodes.get(p).map(|n| (p, n)))
                {
                    Some((p, n)) if n.kind != NodeKind::Dir && *p != path => (p.clone(), n.clone()),
                    _ => {
                        return Err(LayerError::BadHardLink {
                            path: entry.path.clone(),
                            target: target.clone(),
                        });
                    }
                };
                if self.remove_subtree(&path) {
                    actions.push(Action::Remove(path.clone()));
                }
                actions.push(Action::HardLink {
                    path: path.clone(),
                    target: node.0,
                });
                self.nodes.insert(path.clone(), node.1);
                self.touch(&path);
                return Ok(actions);
            }
            other => {
                if self.remove_subtree(&path) {
                    actions.push(Action::Remove(path.clone()));
                }
                match other {
                    EntryKind::File { size, sha256 } => {
                        actions.push(Action::File {
                            path: path.clone(),
                            mode,
                            uid,
                            gid,
                        });
                        NodeKind::File {
                            size: *size,
                            sha256: *sha256,
                        }
                    }
                    EntryKind::Symlink { target } => {
                        actions.push(Action::Symlink {
                            path: path.clone(),
                            target: target.clone(),
                            uid,
                            gid,
                        });
                        NodeKind::Symlink {
                            target: target.clone(),
                        }
                    }
                    _ => {
                        actions.push(Action::Special(path.clone()));
                        NodeKind::Special
                    }
                }
            }
        };
        self.nodes.insert(
            path.clone(),
            Node {
                kind: node_kind,
                mode,
                uid,
                gid,
            },
        );
        self.touch(&path);
        Ok(actions)
    }

    /// Resolves a hard-link target name to the canonical path of an existing node (the last
    /// component is not followed: a hard link to a symlink links the symlink).
    fn resolve_existing(
        &mut self,
        entry: &str,
        target: &str,
    ) -> Result<Option<String>, LayerError> {
        let comps = normalize(target)?;
        let Some((base, parents)) = comps.split_last() else {
            return Ok(None);
        };
        let mut scratch = Vec::new();
        let dir = self.resolve_dir(entry, parents, false, &mut scratch)?;
        Ok(dir
            .map(|d| join(&d, base))
            .filter(|p| self.nodes.contains_key(p)))
    }

    fn apply_whiteout(
        &mut self,
        entry: &Entry,
        parents: &[&str],
        hidden: &str,
        actions: &mut Vec<Action>,
    ) -> Result<(), LayerError> {
        let mut scratch = Vec::new();
        let Some(dir) = self.resolve_dir(&entry.path, parents, false, &mut scratch)? else {
            // The directory does not exist: nothing to hide.
            return Ok(());
        };
        if !dir.is_empty()
            && !matches!(
                self.nodes.get(&dir),
                Some(Node {
                    kind: NodeKind::Dir,
                    ..
                })
            )
        {
            return Ok(());
        }
        if hidden == ".wh..opq" {
            let prefix = if dir.is_empty() {
                String::new()
            } else {
                format!("{dir}/")
            };
            let doomed: Vec<String> = self
                .nodes
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, _)| k.clone())
                .filter(|k| !self.touched.contains(k))
                .collect();
            let mut last_removed: Option<&str> = None;
            for k in &doomed {
                let under_removed = last_removed
                    .is_some_and(|r| k.starts_with(r) && k.as_bytes().get(r.len()) == Some(&b'/'));
                if !under_removed {
                    actions.push(Action::Remove(k.clone()));
                    last_removed = Some(k);
                }
                self.nodes.remove(k);
            }
            return Ok(());
        }
        if hidden.is_empty() || hidden == "." || hidden.starts_with(".wh.") {
            return Err(LayerError::BadWhiteout {
                path: entry.path.clone(),
            });
        }
        let path = join(&dir, hidden);
        if !self.touched.contains(&path) && self.remove_subtree(&path) {
            actions.push(Action::Remove(path));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::File { size, sha256: None },
            mode: 0o644,
            uid: 0,
            gid: 0,
        }
    }
    fn dir(path: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
        }
    }
    fn link(path: &str, target: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::Symlink {
                target: target.into(),
            },
            mode: 0o777,
            uid: 0,
            gid: 0,
        }
    }
    fn paths(t: &FileTree) -> Vec<&str> {
        t.iter().map(|(p, _)| p).collect()
    }

    #[test]
    fn implicit_parents_and_replacement() {
        let mut t = FileTree::new();
        let acts = t.apply(&file("./a/b/c", 1)).unwrap();
        assert_eq!(acts.len(), 3);
        assert_eq!(paths(&t), ["a", "a/b", "a/b/c"]);
        t.apply(&file("a/b", 2)).unwrap();
        assert_eq!(paths(&t), ["a", "a/b"]);
        t.apply(&dir("/a/b/")).unwrap();
        assert_eq!(t.get("a/b").unwrap().kind, NodeKind::Dir);
    }

    #[test]
    fn whiteouts_hide_lower_layers_only() {
        let mut t = FileTree::new();
        for e in [
            file("d/x", 1),
            file("d/y", 1),
            dir("d/sub"),
            file("d/sub/z", 1),
            file("keep", 1),
        ] {
            t.apply(&e).unwrap();
        }
        t.begin_layer();
        t.apply(&file("d/new", 1)).unwrap();
        t.apply(&file("d/sub/w", 1)).unwrap();
        t.apply(&file("d/.wh..wh..opq", 0)).unwrap();
        assert_eq!(paths(&t), ["d", "d/new", "d/sub", "d/sub/w", "keep"]);
        t.apply(&file("same", 1)).unwrap();
        t.apply(&file(".wh.same", 0)).unwrap();
        assert_eq!(
            paths(&t),
            ["d", "d/new", "d/sub", "d/sub/w", "keep", "same"],
            "same-layer entry stays"
        );
        t.begin_layer();
        t.apply(&file(".wh.same", 0)).unwrap();
        t.apply(&file(".wh.keep", 0)).unwrap();
        t.apply(&file("d/.wh.sub", 0)).unwrap();
        assert_eq!(paths(&t), ["d", "d/new"]);
        assert!(matches!(
            t.apply(&file("d/.wh..wh.x", 0)),
            Err(LayerError::BadWhiteout { .. })
        ));
    }

    #[test]
    fn symlinked_parents_resolve_inside_root() {
        let mut t = FileTree::new();
        t.apply(&dir("usr/lib")).unwrap();
        t.apply(&link("lib", "usr/lib")).unwrap();
        t.apply(&link("abs", "/usr")).unwrap();
        t.apply(&file("lib/libc.so", 5)).unwrap();
        t.apply(&file("abs/lib/x", 5)).unwrap();
        assert!(t.get("usr/lib/libc.so").is_some() && t.get("usr/lib/x").is_some());
    }

    #[test]
    fn refuses_escapes_and_loops() {
        let mut t = FileTree::new();
        assert!(matches!(
            t.apply(&file("../etc/passwd", 1)),
            Err(LayerError::DotDot { .. })
        ));
        assert!(matches!(
            t.apply(&file("a/../../x", 1)),
            Err(LayerError::DotDot { .. })
        ));
        t.apply(&link("evil", "../../../tmp")).unwrap();
        let err = t.apply(&file("evil/x", 1)).unwrap_err();
        assert!(matches!(err, LayerError::EscapesRoot { .. }), "{err}");
        assert!(err.to_string().contains("/evil"), "{err}");
        t.apply(&link("l1", "l2")).unwrap();
        t.apply(&link("l2", "l1")).unwrap();
        assert!(matches!(
            t.apply(&file("l1/x", 1)),
            Err(LayerError::SymlinkLoop { .. })
        ));
        t.apply(&file("f", 1)).unwrap();
        assert!(matches!(
            t.apply(&file("f/x", 1)),
            Err(LayerError::NotADirectory { .. })
        ));
    }

    #[test]
    fn hard_links_copy_target() {
        let mut t = FileTree::new();
        t.apply(&Entry {
            kind: EntryKind::File {
                size: 3,
                sha256: Some([7; 32]),
            },
            ..file("bin/a", 0)
        })
        .unwrap();
        let hl = Entry {
            path: "bin/b".into(),
            kind: EntryKind::HardLink {
                target: "./bin/a".into(),
            },
            mode: 0,
            uid: 0,
            gid: 0,
        };
        let acts = t.apply(&hl).unwrap();
        assert_eq!(
            acts,
            [Action::HardLink {
                path: "bin/b".into(),
                target: "bin/a".into()
            }]
        );
        assert_eq!(
            t.get("bin/b").unwrap().kind,
            NodeKind::File {
                size: 3,
                sha256: Some([7; 32])
            }
        );
        let bad = Entry {
            kind: EntryKind::HardLink {
                target: "nope".into(),
            },
            ..hl.clone()
        };
        assert!(matches!(t.apply(&bad), Err(LayerError::BadHardLink { .. })));
        let to_dir = Entry {
            kind: EntryKind::HardLink {
                target: "bin".into(),
            },
            ..hl
        };
        assert!(matches!(
            t.apply(&to_dir),
            Err(LayerError::BadHardLink { .. })
        ));
    }
}
