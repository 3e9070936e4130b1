-- ccm manager schema, version 15: platform collateral kept monotonic. Same dialect rules as 0001.
--
-- One current collateral set per trusted root, FMSPC, PCK CA type, TEE and TCB evaluation set
-- (`standard` or `early`). The age columns (evaluation data numbers, issue dates of TCB info and
-- QE identity, thisUpdate of both CRLs) decide whether an offered set may replace the current
-- one: only when no part is older and one is newer, so nobody can bring back collateral from
-- before a TCB recovery or a revocation. The values of ca_type, tee, tcb_update and source are
-- constrained after the migrations (domains). platform_collateral (0002) keeps what older
-- managers stored until the manager has offered it here once.
CREATE TABLE collateral_sets (
    root_fingerprint TEXT NOT NULL,
    fmspc TEXT NOT NULL,
    ca_type TEXT NOT NULL,
    tee TEXT NOT NULL,
    tcb_update TEXT NOT NULL,
    collateral TEXT NOT NULL,
    tcb_evaluation_data_number BIGINT NOT NULL,
    qe_evaluation_data_number BIGINT NOT NULL,
    tcb_info_issued BIGINT NOT NULL,
    qe_identity_issued BIGINT NOT NULL,
    pck_crl_issued BIGINT NOT NULL,
    root_crl_issued BIGINT NOT NULL,
    valid_until BIGINT NOT NULL,
    simulated BIGINT NOT NULL,
    source TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_attempt_at BIGINT,
    last_error TEXT,
    PRIMARY KEY (root_fingerprint, fmspc, ca_type, tee, tcb_update)
);

-- A lease one replica holds to do a job the others must not do at the same time (the
-- collateral refresher): taken when free or expired, renewed by its holder.
CREATE TABLE leases (
    name TEXT NOT NULL PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
