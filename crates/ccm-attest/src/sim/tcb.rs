//! The simulated platform's fixed TCB tables.
//!
//! Every simulated platform of one FMSPC shares the same TCB info levels, as real platforms of
//! one FMSPC share Intel's. A platform's TCB status is chosen by giving it the component SVNs of
//! the level with that status; its QE's status by giving the QE the ISVSVN of the QE identity
//! level with that status. Advisory ids are simulated ones (`CCM-SIM-SA-…`), never Intel's.

use crate::collateral::{QeTcb, QeTcbLevel, Tcb, TcbComponent, TcbLevel, TcbStatus};

/// Advisory: platform configuration (simulated).
pub const SA_CONFIGURATION: &str = "CCM-SIM-SA-00001";
/// Advisory: software hardening (simulated).
pub const SA_SW_HARDENING: &str = "CCM-SIM-SA-00002";
/// Advisory: out-of-date microcode (simulated).
pub const SA_OUT_OF_DATE: &str = "CCM-SIM-SA-00003";
/// Advisory: revoked TCB (simulated).
pub const SA_REVOKED: &str = "CCM-SIM-SA-00004";
/// Advisory: out-of-date quoting enclave (simulated).
pub const SA_QE_OUT_OF_DATE: &str = "CCM-SIM-SA-00005";
/// Advisory: revoked quoting enclave (simulated).
pub const SA_QE_REVOKED: &str = "CCM-SIM-SA-00006";

/// One row of the platform TCB table.
pub(crate) struct TcbRow {
    pub(crate) status: TcbStatus,
    pub(crate) components: [u8; 16],
    pub(crate) pcesvn: u16,
    pub(crate) date: &'static str,
    pub(crate) advisories: &'static [&'static str],
}

const fn comps(cpu: u8, config: u8) -> [u8; 16] {
    [cpu, cpu, 3, 3, 255, 1, config, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// The TCB levels, highest first (component 0/1 model the microcode, component 6 a
/// configuration-dependent component).
pub(crate) const TCB_TABLE: [TcbRow; 7] = [
    TcbRow {
        status: TcbStatus::UpToDate,
        components: comps(8, 12),
        pcesvn: 13,
        date: "2024-11-13T00:00:00Z",
        advisories: &[],
    },
    TcbRow {
        status: TcbStatus::ConfigurationNeeded,
        components: comps(8, 0),
        pcesvn: 13,
        date: "2024-11-13T00:00:00Z",
        advisories: &[SA_CONFIGURATION],
    },
    TcbRow {
        status: TcbStatus::SWHardeningNeeded,
        components: comps(7, 12),
        pcesvn: 13,
        date: "2024-03-13T00:00:00Z",
        advisories: &[SA_SW_HARDENING],
    },
    TcbRow {
        status: TcbStatus::ConfigurationAndSWHardeningNeeded,
        components: comps(7, 0),
        pcesvn: 13,
        date: "2024-03-13T00:00:00Z",
        advisories: &[SA_CONFIGURATION, SA_SW_HARDENING],
    },
    TcbRow {
        status: TcbStatus::OutOfDate,
        components: comps(6, 12),
        pcesvn: 13,
        date: "2023-02-15T00:00:00Z",
        advisories: &[SA_OUT_OF_DATE, SA_SW_HARDENING],
    },
    TcbRow {
        status: TcbStatus::OutOfDateConfigurationNeeded,
        components: comps(6, 0),
        pcesvn: 13,
        date: "2023-02-15T00:00:00Z",
        advisories: &[SA_CONFIGURATION, SA_OUT_OF_DATE, SA_SW_HARDENING],
    },
    TcbRow {
        status: TcbStatus::Revoked,
        components: comps(5, 12),
        pcesvn: 11,
        date: "2021-11-10T00:00:00Z",
        advisories: &[SA_REVOKED],
    },
];

/// The QE identity levels, highest ISVSVN first: (ISVSVN, status, date, advisories).
pub(crate) const QE_TABLE: [(u16, TcbStatus, &str, &[&str]); 3] = [
    (8, TcbStatus::UpToDate, "2024-03-13T00:00:00Z", &[]),
    (
        6,
        TcbStatus::OutOfDate,
        "2021-11-10T00:00:00Z",
        &[SA_QE_OUT_OF_DATE],
    ),
    (
        2,
        TcbStatus::Revoked,
        "2019-05-15T00:00:00Z",
        &[SA_QE_REVOKED],
    ),
];

/// The platform TCB (components, PCESVN) whose level has `status`.
pub(crate) fn platform_tcb(status: TcbStatus) -> ([u8; 16], u16) {
    TCB_TABLE
        .iter()
        .find(|row| row.status == status)
        .map_or((comps(8, 12), 13), |row| (row.components, row.pcesvn))
}

/// The QE ISVSVN whose QE identity level has `status` (`None`: the table has no such level).
pub(crate) fn qe_isvsvn(status: TcbStatus) -> Option<u16> {
    QE_TABLE
        .iter()
        .find(|(_, s, _, _)| *s == status)
        .map(|(svn, _, _, _)| *svn)
}

/// The TCB info levels in Intel's JSON shape.
pub(crate) fn tcb_levels() -> Vec<TcbLevel> {
    TCB_TABLE
        .iter()
        .map(|row| TcbLevel {
            tcb: Tcb {
                sgxtcbcomponents: row
                    .components
                    .iter()
                    .map(|svn| TcbComponent {
                        svn: *svn,
                        category: None,
                        kind: None,
                    })
                    .collect(),
                pcesvn: row.pcesvn,
            },
            tcb_date: row.date.into(),
            tcb_status: row.status,
            advisory_ids: row.advisories.iter().map(|s| (*s).to_owned()).collect(),
        })
        .collect()
}

/// The QE identity levels in Intel's JSON shape.
pub(crate) fn qe_levels() -> Vec<QeTcbLevel> {
    QE_TABLE
        .iter()
        .map(|(isvsvn, status, date, advisories)| QeTcbLevel {
            tcb: QeTcb { isvsvn: *isvsvn },
            tcb_date: (*date).into(),
            tcb_status: *status,
            advisory_ids: advisories.iter().map(|s| (*s).to_owned()).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_every_status_is_reachable() {
        for pair in TCB_TABLE.windows(2) {
            assert!(
                (pair[0].components, pair[0].pcesvn) > (pair[1].components, pair[1].pcesvn),
                "levels must be strictly descending"
            );
        }
        for status in TcbStatus::ALL {
            let (c, p) = platform_tcb(status);
            // The first level met by the platform is the one with that status.
            let first = TCB_TABLE
                .iter()
                .find(|row| row.components.iter().zip(&c).all(|(n, h)| h >= n) && p >= row.pcesvn)
                .unwrap();
            assert_eq!(first.status, status);
        }
    }
}
