//! Appraisal policy, applied to a quote after it verified.
//!
//! Verification answers "is this a genuine quote and what is the platform's TCB status"; a
//! [`Policy`] answers "do we accept it". Keeping them apart lets one verified quote be judged
//! against several policies (account, application) without verifying twice.

use crate::collateral::TcbStatus;
use crate::error::{PolicyError, PolicyViolation};
use crate::verify::VerifiedQuote;

/// What an account or application accepts.
///
/// The default is secure: TCB status `UpToDate` or `SWHardeningNeeded`, no debug enclaves, any
/// ISVSVN, no simulated platforms. `Revoked` can never be accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    accepted: Vec<TcbStatus>,
    allow_debug: bool,
    min_isvsvn: u16,
    allow_simulated: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            accepted: vec![TcbStatus::UpToDate, TcbStatus::SWHardeningNeeded],
            allow_debug: false,
            min_isvsvn: 0,
            allow_simulated: false,
        }
    }
}

impl Policy {
    /// Replaces the accepted TCB statuses (`Revoked` is dropped: it is never acceptable).
    pub fn accept_statuses(mut self, statuses: impl IntoIterator<Item = TcbStatus>) -> Self {
        self.accepted = statuses
            .into_iter()
            .filter(|s| *s != TcbStatus::Revoked)
            .collect();
        self.accepted.sort();
        self.accepted.dedup();
        self
    }

    /// Allows or refuses debug enclaves.
    pub fn allow_debug(mut self, allow: bool) -> Self {
        self.allow_debug = allow;
        self
    }

    /// Sets the minimum enclave ISVSVN.
    pub fn min_isvsvn(mut self, min: u16) -> Self {
        self.min_isvsvn = min;
        self
    }

    /// Allows or refuses quotes from simulated platforms. **Dangerous:** a simulated platform
    /// proves nothing (anyone holding its files can mint quotes for any enclave); allow it only
    /// where the account and the application chose to trust simulation (development, tests).
    pub fn dangerous_allow_simulated(mut self, allow: bool) -> Self {
        self.allow_simulated = allow;
        self
    }

    /// Whether quotes from simulated platforms are accepted.
    pub fn allows_simulated(&self) -> bool {
        self.allow_simulated
    }

    /// The accepted TCB statuses.
    pub fn accepted_statuses(&self) -> &[TcbStatus] {
        &self.accepted
    }

    /// Every way `quote` falls short of this policy (empty when it passes).
    pub fn violations(&self, quote: &VerifiedQuote) -> Vec<PolicyViolation> {
        let mut out = Vec::new();
        if quote.status == TcbStatus::Revoked || !self.accepted.contains(&quote.status) {
            out.push(PolicyViolation::TcbStatus(quote.status));
        }
        if quote.debug() && !self.allow_debug {
            out.push(PolicyViolation::DebugEnclave);
        }
        let isvsvn = quote.isvsvn();
        if isvsvn < self.min_isvsvn {
            out.push(PolicyViolation::IsvSvnTooLow {
                isvsvn,
                min: self.min_isvsvn,
            });
        }
        if quote.simulated && !self.allow_simulated {
            out.push(PolicyViolation::SimulatedPlatform);
        }
        out
    }

    /// `Ok` when `quote` satisfies this policy, otherwise every violation.
    pub fn check(&self, quote: &VerifiedQuote) -> Result<(), PolicyError> {
        let violations = self.violations(quote);
        if violations.is_empty() {
            Ok(())
        } else {
            Err(PolicyError { violations })
        }
    }
}
