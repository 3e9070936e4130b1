//! `ccm sgx`: inspect SGX artefacts — the MRENCLAVE of an SGXS stream, the fields and signature
//! of a SIGSTRUCT.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ccm_sgx::{Attributes, Sigstruct, measure_sgxs};
use serde_json::{Value, json};

use super::Failure;

/// SGX artefacts.
#[derive(Debug, clap::Subcommand)]
pub enum SgxCommand {
    /// Print the MRENCLAVE (hex) of an SGXS file, after checking the stream is canonical.
    Measure {
        /// The SGXS stream.
        #[arg(value_name = "FILE.sgxs")]
        file: PathBuf,
    },
    /// Print a SIGSTRUCT's fields as JSON, with whether its signature verifies (exit 1 if it
    /// does not).
    Sigstruct {
        /// The 1808-byte SIGSTRUCT.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// Runs an `ccm sgx` subcommand.
pub fn run(command: SgxCommand) -> anyhow::Result<()> {
    match command {
        SgxCommand::Measure { file } => {
            let stream = read(&file)?;
            let measured = measure_sgxs(&stream).with_context(|| format!("{}", file.display()))?;
            println!("{}", measured.mrenclave);
            Ok(())
        }
        SgxCommand::Sigstruct { file } => {
            let bytes = read(&file)?;
            let sigstruct =
                Sigstruct::parse_checked(&bytes).with_context(|| format!("{}", file.display()))?;
            let verdict = sigstruct.verify();
            let mut out = sigstruct_json(&sigstruct);
            out["signature_valid"] = json!(verdict.is_ok());
            out["signature_error"] = json!(verdict.as_ref().err().map(ToString::to_string));
            println!("{}", serde_json::to_string_pretty(&out)?);
            match verdict {
                Ok(()) => Ok(()),
                Err(e) => Err(Failure {
                    code: 1,
                    message: format!("{}: {e}", file.display()),
                }
                .into()),
            }
        }
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn attributes_json(a: &Attributes) -> Value {
    let names: Vec<String> = a
        .flags()
        .iter_names()
        .map(|(name, _)| name.to_string())
        .collect();
    json!({
        "flags": format!("{:#018x}", a.flags().bits()),
        "flag_names": names,
        "xfrm": format!("{:#018x}", a.xfrm()),
    })
}

/// Every field of the SIGSTRUCT, with MRSIGNER derived from the modulus.
fn sigstruct_json(s: &Sigstruct) -> Value {
    let date = match s.date() {
        Ok((y, m, d)) => json!(format!("{y:04}-{m:02}-{d:02}")),
        Err(_) => json!(format!("{:#010x} (not a BCD date)", s.date.get())),
    };
    json!({
        "header": hex::encode(s.header),
        "vendor": format!("{:#x}", s.vendor.get()),
        "date": date,
        "header2": hex::encode(s.header2),
        "swdefined": format!("{:#x}", s.swdefined.get()),
        "modulus": hex::encode(s.modulus),
        "exponent": s.exponent.get(),
        "signature": hex::encode(s.signature),
        "miscselect": format!("{:#x}", s.misc_select.get()),
        "miscmask": format!("{:#x}", s.misc_mask.get()),
        "cet_attributes": s.cet_attributes,
        "cet_attributes_mask": s.cet_attributes_mask,
        "isvfamilyid": hex::encode(s.isv_family_id),
        "attributes": attributes_json(&s.attributes),
        "attributemask": attributes_json(&s.attribute_mask),
        "debug": s.attributes.is_debug(),
        "mrenclave": s.enclave_hash.to_string(),
        "isvextprodid": hex::encode(s.isv_ext_prod_id),
        "isvprodid": s.isv_prod_id.get(),
        "isvsvn": s.isv_svn.get(),
        "q1": hex::encode(s.q1),
        "q2": hex::encode(s.q2),
        "mrsigner": s.mrsigner().to_string(),
    })
}
