//! Intel AESM wire protocol, the quote-helper server with its backends, and the client.
