//! Request and response types of the manager REST API and the node-agent API.
