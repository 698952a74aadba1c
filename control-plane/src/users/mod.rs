//! Users and their API keys: creation (user and key in one transaction), look-up,
//! and authentication of a presented `tp-` key.

pub mod keys;
mod model;
mod service;

pub use model::{NewUser, User, UserStatus};
pub use service::{
    authenticate, create_user, find_by_key_hash, get_user, list_users, set_status, CreateUser,
    CreatedUser,
};
