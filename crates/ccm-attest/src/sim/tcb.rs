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
/// Advisory: microcode below a simulated TCB recovery's (simulated).
pub const SA_TCB_RECOVERY: &str = "CCM-SIM-SA-00007";

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

fn level(
    components: [u8; 16],
    pcesvn: u16,
    date: &str,
    status: TcbStatus,
    advisories: &[&str],
) -> TcbLevel {
    TcbLevel {
        tcb: Tcb {
            sgxtcbcomponents: components
                .iter()
                .map(|svn| TcbComponent {
                    svn: *svn,
                    category: None,
                    kind: None,
                })
                .collect(),
            pcesvn,
        },
        tcb_date: date.into(),
        tcb_status: status,
        advisory_ids: advisories.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// What a TCB recovery makes of a level below its new top: OutOfDate, keeping whether the
/// configuration is behind too; OutOfDate and Revoked levels stay.
fn after_recovery(status: TcbStatus) -> TcbStatus {
    match status {
        TcbStatus::UpToDate | TcbStatus::SWHardeningNeeded => TcbStatus::OutOfDate,
        TcbStatus::ConfigurationNeeded | TcbStatus::ConfigurationAndSWHardeningNeeded => {
            TcbStatus::OutOfDateConfigurationNeeded
        }
        other => other,
    }
}

/// The microcode SVN (components 0 and 1) UpToDate requires after `recoveries` TCB recoveries.
pub(crate) fn required_microcode(recoveries: u32) -> u8 {
    8u8.saturating_add(u8::try_from(recoveries).unwrap_or(u8::MAX))
}

/// The TCB info levels in Intel's JSON shape, after `recoveries` TCB recoveries. Each recovery
/// raises the microcode SVN UpToDate requires by one: the levels of older microcode are
/// OutOfDate from then on.
pub(crate) fn tcb_levels(recoveries: u32) -> Vec<TcbLevel> {
    if recoveries == 0 {
        return TCB_TABLE
            .iter()
            .map(|row| {
                level(
                    row.components,
                    row.pcesvn,
                    row.date,
                    row.status,
                    row.advisories,
                )
            })
            .collect();
    }
    let date = "2025-08-12T00:00:00Z";
    let top = required_microcode(recoveries);
    let mut levels = vec![
        level(comps(top, 12), 13, date, TcbStatus::UpToDate, &[]),
        level(
            comps(top, 0),
            13,
            date,
            TcbStatus::ConfigurationNeeded,
            &[SA_CONFIGURATION],
        ),
    ];
    for cpu in (9..top).rev() {
        levels.push(level(
            comps(cpu, 12),
            13,
            date,
            TcbStatus::OutOfDate,
            &[SA_TCB_RECOVERY],
        ));
        levels.push(level(
            comps(cpu, 0),
            13,
            date,
            TcbStatus::OutOfDateConfigurationNeeded,
            &[SA_CONFIGURATION, SA_TCB_RECOVERY],
        ));
    }
    for row in &TCB_TABLE {
        let status = after_recovery(row.status);
        let mut advisories: Vec<&str> = row.advisories.to_vec();
        if status != row.status {
            advisories.push(SA_TCB_RECOVERY);
        }
        levels.push(level(
            row.components,
            row.pcesvn,
            row.date,
            status,
            &advisories,
        ));
    }
    levels
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

    #[test]
    fn a_recovery_puts_a_new_level_on_top_and_everything_below_out_of_date() {
        for recoveries in 1..4 {
            let levels = tcb_levels(recoveries);
            let key = |l: &TcbLevel| {
                let c: Vec<u8> = l.tcb.sgxtcbcomponents.iter().map(|c| c.svn).collect();
                (c, l.tcb.pcesvn)
            };
            for pair in levels.windows(2) {
                assert!(
                    key(&pair[0]) > key(&pair[1]),
                    "levels must be strictly descending"
                );
            }
            assert_eq!(levels[0].tcb_status, TcbStatus::UpToDate);
            assert_eq!(
                levels[0].tcb.sgxtcbcomponents[0].svn,
                required_microcode(recoveries)
            );
            // The platform that was UpToDate before is OutOfDate, with the recovery's advisory.
            let (c, p) = platform_tcb(TcbStatus::UpToDate);
            let met = levels
                .iter()
                .find(|l| {
                    l.tcb
                        .sgxtcbcomponents
                        .iter()
                        .zip(&c)
                        .all(|(n, h)| *h >= n.svn)
                        && p >= l.tcb.pcesvn
                })
                .unwrap();
            assert_eq!(met.tcb_status, TcbStatus::OutOfDate);
            assert!(met.advisory_ids.iter().any(|a| a == SA_TCB_RECOVERY));
            assert!(
                levels
                    .iter()
                    .all(|l| l.tcb_status != TcbStatus::SWHardeningNeeded)
            );
        }
    }
}
