//! Root tests of the network module, each in a throwaway network namespace.
