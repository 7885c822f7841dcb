//! Container attribution from cgroup paths (being written).
