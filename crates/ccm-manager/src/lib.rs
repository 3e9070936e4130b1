//! The ccm control plane: REST API, web console, authentication, workflows and jobs.
