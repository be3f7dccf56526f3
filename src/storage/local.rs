//! Local directory storage (to be written).
