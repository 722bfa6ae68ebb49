//! kind clusters that work with no container registry: the node image (pulled or built here),
//! the cluster's lifecycle, and the application images loaded into it.
mod add_on;
pub mod app_images;
pub mod docker;
pub mod external_secrets;
mod go_image;
pub mod kind;
mod layout;
pub mod lifecycle;
pub mod mlflow;
pub mod network_policies;
pub mod node_image;
mod pod_network;
pub mod policy_controller;
pub mod prometheus;
pub mod registry;
pub mod sealed_secrets;
pub mod stage;
