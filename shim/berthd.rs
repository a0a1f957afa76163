//! The connection to berthd: a channel per socket, which reconnects by itself while berthd
//! restarts (calls meanwhile fail UNAVAILABLE), and the client the generated API gives.
use std::{path::Path, time::Duration};

use berth_api::container_service_client::ContainerServiceClient;
use tonic::transport::{Channel, Endpoint};

pub type Client = ContainerServiceClient<Channel>;

/// A client of the berthd listening on `socket`. Nothing is dialled until the first call.
pub fn client(socket: &Path) -> Result<Client, tonic::transport::Error> {
    let channel = Endpoint::from_shared(format!("unix:{}", socket.display()))?
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy();
    Ok(ContainerServiceClient::new(channel))
}
