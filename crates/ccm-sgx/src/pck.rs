//! The Intel SGX PCK certificate extension (OID 1.2.840.113741.1.13.1), as defined in Intel's
//! "SGX PCK Certificate and Certificate Revocation List Profile":
//!
//! ```text
//! SGXExtensions ::= SEQUENCE OF SEQUENCE { id OBJECT IDENTIFIER, value ANY }
//!   .1 PPID                 OCTET STRING (16)
//!   .2 TCB                  SEQUENCE OF SEQUENCE { id, value }
//!        .2.1 ... .2.16     INTEGER (0..255)   SGX TCB component SVNs
//!        .2.17              INTEGER (0..65535) PCESVN
//!        .2.18              OCTET STRING (16)  CPUSVN
//!   .3 PCE-ID               OCTET STRING (2)
//!   .4 FMSPC                OCTET STRING (6)
//!   .5 SGX Type             ENUMERATED (0 Standard, 1 Scalable, 2 Scalable with integrity)
//!   .6 Platform instance id OCTET STRING (16)   (platform CA certificates only)
//!   .7 Configuration        SEQUENCE OF SEQUENCE { id, BOOLEAN }   (platform CA only)
//!        .7.1 dynamic platform, .7.2 cached keys, .7.3 SMT enabled
//! ```
//!
//! Entries may come in any order; each known entry must appear at most once and the five
//! mandatory ones must be present. Entries with unknown OIDs are skipped (Intel may add fields)
//! and are not re-encoded. [`SgxExtension::to_der`] writes the entries in Intel's order and
//! reproduces Intel's encoding byte for byte.

use der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef};
use der::{Decode, Encode, Sequence, Tag, Tagged};

use crate::error::PckExtensionError;
use crate::types::CpuSvn;

/// OID of the SGX extension in PCK certificates.
pub const SGX_EXTENSION_OID: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1");

const ARC_PPID: u32 = 1;
const ARC_TCB: u32 = 2;
const ARC_PCEID: u32 = 3;
const ARC_FMSPC: u32 = 4;
const ARC_SGX_TYPE: u32 = 5;
const ARC_PLATFORM_INSTANCE_ID: u32 = 6;
const ARC_CONFIGURATION: u32 = 7;
const ARC_PCESVN: u32 = 17;
const ARC_CPUSVN: u32 = 18;
const ARC_DYNAMIC_PLATFORM: u32 = 1;
const ARC_CACHED_KEYS: u32 = 2;
const ARC_SMT_ENABLED: u32 = 3;

/// The SGX type of a platform (ENUMERATED). Unknown values are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SgxType(pub u32);

impl SgxType {
    /// Standard (client and Xeon E) SGX.
    pub const STANDARD: Self = Self(0);
    /// Scalable SGX (Xeon Scalable).
    pub const SCALABLE: Self = Self(1);
    /// Scalable SGX with memory integrity.
    pub const SCALABLE_WITH_INTEGRITY: Self = Self(2);

    /// Intel's name of a known value.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Self::STANDARD => Some("Standard"),
            Self::SCALABLE => Some("Scalable"),
            Self::SCALABLE_WITH_INTEGRITY => Some("ScalableWithIntegrity"),
            _ => None,
        }
    }
}

/// The TCB the PCK certificate was issued for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PckTcb {
    /// SGX TCB component SVNs 1..16 (index 0 is component 1).
    pub comp_svn: [u8; 16],
    /// PCESVN.
    pub pce_svn: u16,
    /// CPUSVN.
    pub cpu_svn: CpuSvn,
}

/// The configuration entry of platform CA PCK certificates. Each flag is optional.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PlatformConfiguration {
    /// Whether the platform can be extended with additional packages.
    pub dynamic_platform: Option<bool>,
    /// Whether the platform root keys are cached by the registration backend.
    pub cached_keys: Option<bool>,
    /// Whether SMT is enabled.
    pub smt_enabled: Option<bool>,
}

/// The content of the SGX extension of a PCK certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SgxExtension {
    /// PPID, the platform provisioning id.
    pub ppid: [u8; 16],
    /// The TCB.
    pub tcb: PckTcb,
    /// PCE-ID.
    pub pce_id: [u8; 2],
    /// FMSPC, the family-model-stepping-platform-custom SKU.
    pub fmspc: [u8; 6],
    /// SGX type.
    pub sgx_type: SgxType,
    /// Platform instance id (platform CA certificates only).
    pub platform_instance_id: Option<[u8; 16]>,
    /// Configuration (platform CA certificates only).
    pub configuration: Option<PlatformConfiguration>,
}

#[derive(Sequence)]
struct Entry<'a> {
    id: ObjectIdentifier,
    value: AnyRef<'a>,
}

fn der_err(field: &'static str) -> impl Fn(der::Error) -> PckExtensionError {
    move |source| PckExtensionError::Der { field, source }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> PckExtensionError {
    PckExtensionError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// The last arc of `id` if `id` is `parent.<arc>`.
fn child_arc(id: &ObjectIdentifier, parent: &ObjectIdentifier) -> Option<u32> {
    let parent_len = parent.arcs().count();
    let mut arcs = id.arcs();
    let prefix: Vec<u32> = arcs.by_ref().take(parent_len).collect();
    if !prefix.iter().copied().eq(parent.arcs()) {
        return None;
    }
    match (arcs.next(), arcs.next()) {
        (Some(arc), None) => Some(arc),
        _ => None,
    }
}

fn child_oid(parent: &ObjectIdentifier, arc: u32) -> Result<ObjectIdentifier, PckExtensionError> {
    parent
        .push_arc(arc)
        .map_err(|e| invalid("OID", e.to_string()))
}

fn octets<const N: usize>(
    value: AnyRef<'_>,
    field: &'static str,
) -> Result<[u8; N], PckExtensionError> {
    let os = value
        .decode_as::<OctetStringRef<'_>>()
        .map_err(der_err(field))?;
    <[u8; N]>::try_from(os.as_bytes()).map_err(|_| {
        invalid(
            field,
            format!("{} bytes, expected {N}", os.as_bytes().len()),
        )
    })
}

fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    field: &'static str,
) -> Result<(), PckExtensionError> {
    if slot.replace(value).is_some() {
        return Err(PckExtensionError::Duplicate(field));
    }
    Ok(())
}

fn decode_entries<'a>(
    bytes: &'a [u8],
    field: &'static str,
) -> Result<Vec<Entry<'a>>, PckExtensionError> {
    Vec::<Entry<'a>>::from_der(bytes).map_err(der_err(field))
}

fn decode_tcb(value: AnyRef<'_>) -> Result<PckTcb, PckExtensionError> {
    if value.tag() != Tag::Sequence {
        return Err(invalid(
            "TCB",
            format!("tag {}, expected SEQUENCE", value.tag()),
        ));
    }
    let der = value.to_der().map_err(der_err("TCB"))?;
    let entries = decode_entries(&der, "TCB")?;
    let tcb_oid = child_oid(&SGX_EXTENSION_OID, ARC_TCB)?;
    let mut comps: [Option<u8>; 16] = [None; 16];
    let mut pce_svn = None;
    let mut cpu_svn = None;
    for entry in entries {
        match child_arc(&entry.id, &tcb_oid) {
            Some(arc @ 1..=16) => {
                let svn = entry
                    .value
                    .decode_as::<u8>()
                    .map_err(der_err("TCB component SVN"))?;
                let index = usize::try_from(arc.saturating_sub(1)).unwrap_or(usize::MAX);
                let slot = comps
                    .get_mut(index)
                    .ok_or_else(|| invalid("TCB component SVN", "index out of range"))?;
                set_once(slot, svn, "TCB component SVN")?;
            }
            Some(ARC_PCESVN) => {
                let svn = entry.value.decode_as::<u16>().map_err(der_err("PCESVN"))?;
                set_once(&mut pce_svn, svn, "PCESVN")?;
            }
            Some(ARC_CPUSVN) => set_once(
                &mut cpu_svn,
                CpuSvn(octets::<16>(entry.value, "CPUSVN")?),
                "CPUSVN",
            )?,
            _ => {}
        }
    }
    let mut comp_svn = [0u8; 16];
    for (out, comp) in comp_svn.iter_mut().zip(comps) {
        *out = comp.ok_or(PckExtensionError::Missing("TCB component SVN"))?;
    }
    Ok(PckTcb {
        comp_svn,
        pce_svn: pce_svn.ok_or(PckExtensionError::Missing("PCESVN"))?,
        cpu_svn: cpu_svn.ok_or(PckExtensionError::Missing("CPUSVN"))?,
    })
}

fn decode_enumerated(value: AnyRef<'_>, field: &'static str) -> Result<u32, PckExtensionError> {
    if value.tag() != Tag::Enumerated {
        return Err(invalid(
            field,
            format!("tag {}, expected ENUMERATED", value.tag()),
        ));
    }
    // ENUMERATED has INTEGER's content encoding.
    AnyRef::new(Tag::Integer, value.value())
        .and_then(|any| any.decode_as::<u32>())
        .map_err(der_err(field))
}

fn decode_configuration(value: AnyRef<'_>) -> Result<PlatformConfiguration, PckExtensionError> {
    if value.tag() != Tag::Sequence {
        return Err(invalid(
            "configuration",
            format!("tag {}, expected SEQUENCE", value.tag()),
        ));
    }
    let der = value.to_der().map_err(der_err("configuration"))?;
    let parent = child_oid(&SGX_EXTENSION_OID, ARC_CONFIGURATION)?;
    let mut config = PlatformConfiguration::default();
    for entry in decode_entries(&der, "configuration")? {
        let (slot, field) = match child_arc(&entry.id, &parent) {
            Some(ARC_DYNAMIC_PLATFORM) => (&mut config.dynamic_platform, "dynamic platform"),
            Some(ARC_CACHED_KEYS) => (&mut config.cached_keys, "cached keys"),
            Some(ARC_SMT_ENABLED) => (&mut config.smt_enabled, "SMT enabled"),
            _ => continue,
        };
        let flag = entry.value.decode_as::<bool>().map_err(der_err(field))?;
        set_once(slot, flag, field)?;
    }
    Ok(config)
}

impl SgxExtension {
    /// Parses the extension's value (the content of the extnValue OCTET STRING).
    pub fn from_der(bytes: &[u8]) -> Result<Self, PckExtensionError> {
        let entries = decode_entries(bytes, "SGX extension")?;
        let mut ppid = None;
        let mut tcb = None;
        let mut pce_id = None;
        let mut fmspc = None;
        let mut sgx_type = None;
        let mut platform_instance_id = None;
        let mut configuration = None;
        for entry in entries {
            match child_arc(&entry.id, &SGX_EXTENSION_OID) {
                Some(ARC_PPID) => set_once(&mut ppid, octets::<16>(entry.value, "PPID")?, "PPID")?,
                Some(ARC_TCB) => set_once(&mut tcb, decode_tcb(entry.value)?, "TCB")?,
                Some(ARC_PCEID) => {
                    set_once(&mut pce_id, octets::<2>(entry.value, "PCE-ID")?, "PCE-ID")?;
                }
                Some(ARC_FMSPC) => {
                    set_once(&mut fmspc, octets::<6>(entry.value, "FMSPC")?, "FMSPC")?;
                }
                Some(ARC_SGX_TYPE) => set_once(
                    &mut sgx_type,
                    SgxType(decode_enumerated(entry.value, "SGX type")?),
                    "SGX type",
                )?,
                Some(ARC_PLATFORM_INSTANCE_ID) => set_once(
                    &mut platform_instance_id,
                    octets::<16>(entry.value, "platform instance id")?,
                    "platform instance id",
                )?,
                Some(ARC_CONFIGURATION) => set_once(
                    &mut configuration,
                    decode_configuration(entry.value)?,
                    "configuration",
                )?,
                _ => {}
            }
        }
        Ok(Self {
            ppid: ppid.ok_or(PckExtensionError::Missing("PPID"))?,
            tcb: tcb.ok_or(PckExtensionError::Missing("TCB"))?,
            pce_id: pce_id.ok_or(PckExtensionError::Missing("PCE-ID"))?,
            fmspc: fmspc.ok_or(PckExtensionError::Missing("FMSPC"))?,
            sgx_type: sgx_type.ok_or(PckExtensionError::Missing("SGX type"))?,
            platform_instance_id,
            configuration,
        })
    }

    /// Finds and parses the SGX extension of a DER X.509 certificate.
    pub fn from_certificate_der(cert: &[u8]) -> Result<Self, PckExtensionError> {
        let cert = x509_cert::Certificate::from_der(cert).map_err(der_err("certificate"))?;
        let ext = cert
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id == SGX_EXTENSION_OID)
            .ok_or(PckExtensionError::NotPresent)?;
        Self::from_der(ext.extn_value.as_bytes())
    }

    /// Encodes the extension value in Intel's entry order and encoding.
    pub fn to_der(&self) -> Result<Vec<u8>, PckExtensionError> {
        let ext = &SGX_EXTENSION_OID;
        let tcb_oid = child_oid(ext, ARC_TCB)?;
        let cfg_oid = child_oid(ext, ARC_CONFIGURATION)?;

        // Content octets of each INTEGER, kept alive for the borrowed `AnyRef`s below.
        let comp_ints = self
            .tcb
            .comp_svn
            .iter()
            .map(|svn| integer_content(u32::from(*svn)))
            .collect::<Result<Vec<_>, _>>()?;
        let pce_svn_int = integer_content(u32::from(self.tcb.pce_svn))?;
        let sgx_type_int = integer_content(self.sgx_type.0)?;

        let mut tcb_entries = Vec::with_capacity(18);
        for (arc, content) in (1u32..).zip(&comp_ints) {
            tcb_entries.push(Entry {
                id: child_oid(&tcb_oid, arc)?,
                value: any(Tag::Integer, content)?,
            });
        }
        tcb_entries.push(Entry {
            id: child_oid(&tcb_oid, ARC_PCESVN)?,
            value: any(Tag::Integer, &pce_svn_int)?,
        });
        tcb_entries.push(Entry {
            id: child_oid(&tcb_oid, ARC_CPUSVN)?,
            value: any(Tag::OctetString, &self.tcb.cpu_svn.0)?,
        });
        let tcb_der = tcb_entries.to_der().map_err(der_err("TCB"))?;

        let config_der = match &self.configuration {
            None => None,
            Some(config) => {
                let flags = [
                    (ARC_DYNAMIC_PLATFORM, config.dynamic_platform),
                    (ARC_CACHED_KEYS, config.cached_keys),
                    (ARC_SMT_ENABLED, config.smt_enabled),
                ];
                let mut entries = Vec::new();
                for (arc, flag) in flags {
                    if let Some(flag) = flag {
                        entries.push(Entry {
                            id: child_oid(&cfg_oid, arc)?,
                            value: any(Tag::Boolean, if flag { &[0xff] } else { &[0x00] })?,
                        });
                    }
                }
                Some(entries.to_der().map_err(der_err("configuration"))?)
            }
        };

        let mut entries = vec![
            Entry {
                id: child_oid(ext, ARC_PPID)?,
                value: any(Tag::OctetString, &self.ppid)?,
            },
            Entry {
                id: tcb_oid,
                value: AnyRef::from_der(&tcb_der).map_err(der_err("TCB"))?,
            },
            Entry {
                id: child_oid(ext, ARC_PCEID)?,
                value: any(Tag::OctetString, &self.pce_id)?,
            },
            Entry {
                id: child_oid(ext, ARC_FMSPC)?,
                value: any(Tag::OctetString, &self.fmspc)?,
            },
            Entry {
                id: child_oid(ext, ARC_SGX_TYPE)?,
                value: any(Tag::Enumerated, &sgx_type_int)?,
            },
        ];
        if let Some(id) = &self.platform_instance_id {
            entries.push(Entry {
                id: child_oid(ext, ARC_PLATFORM_INSTANCE_ID)?,
                value: any(Tag::OctetString, id)?,
            });
        }
        if let Some(config) = &config_der {
            entries.push(Entry {
                id: cfg_oid,
                value: AnyRef::from_der(config).map_err(der_err("configuration"))?,
            });
        }
        entries.to_der().map_err(der_err("SGX extension"))
    }
}

fn any<'a>(tag: Tag, content: &'a [u8]) -> Result<AnyRef<'a>, PckExtensionError> {
    AnyRef::new(tag, content).map_err(der_err("value"))
}

/// The content octets of the DER INTEGER encoding of `n` (minimal, with a leading zero when the
/// top bit is set).
fn integer_content(n: u32) -> Result<Vec<u8>, PckExtensionError> {
    let der = n.to_der().map_err(der_err("INTEGER"))?;
    let any = AnyRef::from_der(&der).map_err(der_err("INTEGER"))?;
    Ok(any.value().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(platform_ca: bool) -> SgxExtension {
        let mut comp_svn = [0u8; 16];
        for (i, c) in comp_svn.iter_mut().enumerate() {
            *c = (i as u8).wrapping_mul(37);
        }
        SgxExtension {
            ppid: [1; 16],
            tcb: PckTcb {
                comp_svn,
                pce_svn: 0xffff,
                cpu_svn: CpuSvn([0x80; 16]),
            },
            pce_id: [0, 0],
            fmspc: [0x00, 0x90, 0x6e, 0xa1, 0x00, 0x00],
            sgx_type: if platform_ca {
                SgxType::SCALABLE
            } else {
                SgxType(7)
            },
            platform_instance_id: platform_ca.then_some([9; 16]),
            configuration: platform_ca.then_some(PlatformConfiguration {
                dynamic_platform: Some(true),
                cached_keys: Some(false),
                smt_enabled: None,
            }),
        }
    }

    /// An extension made of the given (arc, tag, content) entries; `None` content means
    /// "the standard TCB sequence of `sample`".
    fn with_entries(entries: &[(u32, Tag, Option<&[u8]>)]) -> Vec<u8> {
        let tcb_der = sample(false).to_der().unwrap();
        let standard = decode_entries(&tcb_der, "t").unwrap();
        let tcb = standard
            .iter()
            .find(|e| child_arc(&e.id, &SGX_EXTENSION_OID) == Some(ARC_TCB))
            .unwrap()
            .value;
        let list: Vec<Entry<'_>> = entries
            .iter()
            .map(|(arc, tag, content)| Entry {
                id: SGX_EXTENSION_OID.push_arc(*arc).unwrap(),
                value: match content {
                    Some(c) => AnyRef::new(*tag, c).unwrap(),
                    None => tcb,
                },
            })
            .collect();
        list.to_der().unwrap()
    }

    fn minimal(skip: u32) -> Vec<(u32, Tag, Option<&'static [u8]>)> {
        [
            (ARC_PPID, Tag::OctetString, Some(&[1u8; 16][..])),
            (ARC_TCB, Tag::Sequence, None),
            (ARC_PCEID, Tag::OctetString, Some(&[0u8, 0][..])),
            (ARC_FMSPC, Tag::OctetString, Some(&[1u8, 2, 3, 4, 5, 6][..])),
            (ARC_SGX_TYPE, Tag::Enumerated, Some(&[0u8][..])),
        ]
        .into_iter()
        .filter(|(arc, _, _)| *arc != skip)
        .collect()
    }

    #[test]
    fn round_trips() {
        for platform_ca in [false, true] {
            let ext = sample(platform_ca);
            let der = ext.to_der().unwrap();
            assert_eq!(SgxExtension::from_der(&der).unwrap(), ext);
            for len in 0..der.len() {
                assert!(SgxExtension::from_der(&der[..len]).is_err(), "prefix {len}");
            }
        }
        // SVNs >= 128 need a leading zero octet in DER.
        let der = sample(false).to_der().unwrap();
        assert!(der.windows(4).any(|w| w == [0x02, 0x02, 0x00, 0x94]));
    }

    #[test]
    fn minimal_extension_parses_and_unknown_entries_are_skipped() {
        let ext = SgxExtension::from_der(&with_entries(&minimal(0))).unwrap();
        assert_eq!(ext.fmspc, [1, 2, 3, 4, 5, 6]);
        assert_eq!(ext.sgx_type, SgxType::STANDARD);
        assert_eq!(ext.platform_instance_id, None);
        let mut entries = minimal(0);
        entries.push((99, Tag::Utf8String, Some(b"future")));
        assert_eq!(
            SgxExtension::from_der(&with_entries(&entries)).unwrap(),
            ext
        );
    }

    #[test]
    fn bad_extensions_are_refused_by_name() {
        for (arc, name) in [
            (ARC_PPID, "PPID"),
            (ARC_TCB, "TCB"),
            (ARC_PCEID, "PCE-ID"),
            (ARC_FMSPC, "FMSPC"),
            (ARC_SGX_TYPE, "SGX type"),
        ] {
            assert!(matches!(
                SgxExtension::from_der(&with_entries(&minimal(arc))),
                Err(PckExtensionError::Missing(n)) if n == name
            ));
        }
        let mut dup = minimal(0);
        dup.push((ARC_PPID, Tag::OctetString, Some(&[2u8; 16][..])));
        assert!(matches!(
            SgxExtension::from_der(&with_entries(&dup)),
            Err(PckExtensionError::Duplicate("PPID"))
        ));
        let mut short = minimal(ARC_FMSPC);
        short.push((ARC_FMSPC, Tag::OctetString, Some(&[1u8, 2, 3, 4, 5][..])));
        assert!(matches!(
            SgxExtension::from_der(&with_entries(&short)),
            Err(PckExtensionError::Invalid { field: "FMSPC", .. })
        ));
        let mut integer_type = minimal(ARC_SGX_TYPE);
        integer_type.push((ARC_SGX_TYPE, Tag::Integer, Some(&[0u8][..])));
        assert!(matches!(
            SgxExtension::from_der(&with_entries(&integer_type)),
            Err(PckExtensionError::Invalid {
                field: "SGX type",
                ..
            })
        ));
        let mut wrong_tag = minimal(ARC_PPID);
        wrong_tag.push((ARC_PPID, Tag::Utf8String, Some(&[b'a'; 16][..])));
        assert!(matches!(
            SgxExtension::from_der(&with_entries(&wrong_tag)),
            Err(PckExtensionError::Der { field: "PPID", .. })
        ));
        assert!(matches!(
            SgxExtension::from_der(b"\x04\x02ab"),
            Err(PckExtensionError::Der {
                field: "SGX extension",
                ..
            })
        ));
    }

    #[test]
    fn bad_tcb_entries_are_refused() {
        let tcb_oid = SGX_EXTENSION_OID.push_arc(ARC_TCB).unwrap();
        let tcb = |comps: &[(u32, Tag, &[u8])]| -> Vec<u8> {
            let entries: Vec<Entry<'_>> = comps
                .iter()
                .map(|(arc, tag, c)| Entry {
                    id: tcb_oid.push_arc(*arc).unwrap(),
                    value: AnyRef::new(*tag, c).unwrap(),
                })
                .collect();
            entries.to_der().unwrap()
        };
        let full = |svn16: &'static [u8]| {
            let mut v: Vec<(u32, Tag, &[u8])> =
                (1..16).map(|a| (a, Tag::Integer, &[1u8][..])).collect();
            v.push((16, Tag::Integer, svn16));
            v.push((ARC_PCESVN, Tag::Integer, &[0x0d]));
            v.push((ARC_CPUSVN, Tag::OctetString, &[1u8; 16]));
            v
        };
        let decode = |tcb_der: &[u8]| decode_tcb(AnyRef::from_der(tcb_der).unwrap());
        assert_eq!(decode(&tcb(&full(&[7]))).unwrap().comp_svn[15], 7);
        // SVN 256 does not fit a component.
        assert!(matches!(
            decode(&tcb(&full(&[1, 0]))),
            Err(PckExtensionError::Der {
                field: "TCB component SVN",
                ..
            })
        ));
        // Component 16 missing.
        let mut missing = full(&[7]);
        missing.retain(|(a, _, _)| *a != 16);
        assert!(matches!(
            decode(&tcb(&missing)),
            Err(PckExtensionError::Missing("TCB component SVN"))
        ));
        let mut dup = full(&[7]);
        dup.push((3, Tag::Integer, &[1]));
        assert!(matches!(
            decode(&tcb(&dup)),
            Err(PckExtensionError::Duplicate("TCB component SVN"))
        ));
        let mut no_cpusvn = full(&[7]);
        no_cpusvn.retain(|(a, _, _)| *a != ARC_CPUSVN);
        assert!(matches!(
            decode(&tcb(&no_cpusvn)),
            Err(PckExtensionError::Missing("CPUSVN"))
        ));
    }
}
