//! Users and their API keys: creation (user and key in one transaction), changes,
//! soft deletion, key rotation and revocation, look-up, and authentication of a
//! presented `tp-` key.

pub mod keys;
mod model;
mod service;

pub use model::{NewUser, User, UserStatus};
pub use service::{
    authenticate, create_user, delete_user, find_by_email, find_by_key_hash, get_user,
    get_user_any, list_users, revoke_keys, rotate_key, update_user, CreateUser, CreatedUser,
    UpdateUser,
};
