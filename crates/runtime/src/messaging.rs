//! Messages for `call: asyncapi`: MQTT 3.1.1 (rumqttc) and AMQP 0-9-1 (lapin), and
//! WebSocket (tokio-tungstenite). Publishing waits for the broker's acknowledgement
//! (an MQTT PUBACK at QoS 1, an AMQP publisher confirm, of a persistent message to a
//! durable queue). A subscription takes messages at least once and acknowledges each
//! only when the engine says it journaled it: an MQTT session that outlives the
//! connection (`clean_session` off, the client id made from the execution and step),
//! or an AMQP consumer with manual acknowledgements; what was not acknowledged is
//! delivered again, marked as redelivered.

use std::collections::HashMap;

use async_trait::async_trait;
use engine::{Channel, Inbound, MessagingError, Outbound, Subscription};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Map, Value};

/// How many messages a subscription is handed before it acknowledges any.
const PREFETCH: u16 = 16;

/// The longest a broker has to answer a connection or a publish.
const BROKER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn broker(e: impl std::fmt::Display) -> MessagingError {
    MessagingError::Broker(e.to_string())
}

/// A payload as JSON when it is JSON, else as text.
fn payload(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// A message from a transport without headers (MQTT 3.1.1, WebSocket): its payload, or,
/// when it is a JSON object of `payload` with `headers` and `correlationId` at most
/// (the DSL's inbound message), those parts.
fn framed(bytes: &[u8], token: u64, redelivered: bool) -> Inbound {
    let value = payload(bytes);
    let envelope = value.as_object().filter(|o| {
        o.contains_key("payload")
            && o.keys()
                .all(|k| matches!(k.as_str(), "payload" | "headers" | "correlationId"))
    });
    match envelope {
        Some(o) => Inbound {
            payload: o["payload"].clone(),
            headers: o
                .get("headers")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            correlation_id: o
                .get("correlationId")
                .and_then(Value::as_str)
                .map(str::to_string),
            id: None,
            redelivered,
            token,
        },
        None => Inbound {
            payload: value,
            headers: Map::new(),
            correlation_id: None,
            id: None,
            redelivered,
            token,
        },
    }
}

/// A payload's bytes: a string as it is, anything else as JSON.
fn bytes(payload: &Value) -> Vec<u8> {
    match payload {
        Value::String(s) => s.clone().into_bytes(),
        other => serde_json::to_vec(other).unwrap_or_default(),
    }
}

/// An MQTT client id of at most 23 characters (3.1.1's guaranteed length), the same
/// for the same consumer.
fn client_id(consumer: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, consumer.as_bytes());
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("skein{hex}")
}

pub(crate) async fn publish(channel: Channel, message: Outbound) -> Result<(), MessagingError> {
    let work = async {
        match channel.protocol.as_str() {
            "mqtt" | "mqtts" => mqtt_publish(&channel, &message).await,
            "amqp" | "amqps" => amqp_publish(&channel, &message).await,
            "ws" | "wss" => ws_publish(&channel, &message).await,
            other => Err(MessagingError::Unsupported(format!(
                "skein publishes over mqtt, amqp, ws and http, not `{other}`"
            ))),
        }
    };
    tokio::time::timeout(BROKER_TIMEOUT, work)
        .await
        .map_err(|_| broker("the broker did not acknowledge the message in time"))?
}

/// Subscribes to `channel`; `http` is the client HTTP channels are read with (the
/// egress policy's, when one applies).
pub(crate) async fn subscribe(
    channel: Channel,
    http: reqwest::Client,
) -> Result<Box<dyn Subscription>, MessagingError> {
    let work = async {
        match channel.protocol.as_str() {
            "mqtt" | "mqtts" => mqtt_subscribe(&channel).await,
            "amqp" | "amqps" => amqp_subscribe(&channel).await,
            "ws" | "wss" => ws_subscribe(&channel).await,
            "http" | "https" => http_subscribe(&channel, http).await,
            other => Err(MessagingError::Unsupported(format!(
                "skein subscribes over mqtt, amqp, ws and http, not `{other}`"
            ))),
        }
    };
    tokio::time::timeout(BROKER_TIMEOUT, work)
        .await
        .map_err(|_| broker("the broker did not answer in time"))?
}

/// The error of a connection the MQTT broker refused.
fn refused(code: rumqttc::ConnectReturnCode) -> MessagingError {
    broker(format!("the broker refused the connection: {code:?}"))
}

fn mqtt_options(channel: &Channel, id: &str) -> Result<rumqttc::MqttOptions, MessagingError> {
    let host = channel
        .server
        .host_str()
        .ok_or_else(|| broker(format!("{} names no host", channel.server)))?;
    let port = channel.server.port().unwrap_or(1883);
    let mut options = rumqttc::MqttOptions::new(id, host, port);
    options.set_keep_alive(std::time::Duration::from_secs(30));
    if let Some((user, password)) = &channel.credentials {
        options.set_credentials(user, password);
    }
    Ok(options)
}

async fn mqtt_publish(channel: &Channel, message: &Outbound) -> Result<(), MessagingError> {
    use rumqttc::{Event, Packet, QoS};
    let id = client_id(&format!("{}#publish", message.id));
    let (client, mut events) = rumqttc::AsyncClient::new(mqtt_options(channel, &id)?, 10);
    client
        .publish(
            channel.address.clone(),
            QoS::AtLeastOnce,
            false,
            bytes(&message.payload),
        )
        .await
        .map_err(broker)?;
    loop {
        match events.poll().await.map_err(broker)? {
            Event::Incoming(Packet::PubAck(_)) => break,
            Event::Incoming(Packet::ConnAck(ack))
                if ack.code != rumqttc::ConnectReturnCode::Success =>
            {
                return Err(refused(ack.code));
            }
            _ => {}
        }
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), events.poll()).await;
    Ok(())
}

struct MqttSubscription {
    client: rumqttc::AsyncClient,
    address: String,
    received: tokio::sync::mpsc::Receiver<Result<rumqttc::Publish, MessagingError>>,
    unacked: HashMap<u64, rumqttc::Publish>,
    next_token: u64,
    poller: tokio_util::task::AbortOnDropHandle<()>,
}

async fn mqtt_subscribe(channel: &Channel) -> Result<Box<dyn Subscription>, MessagingError> {
    use rumqttc::{Event, Packet, QoS};
    let mut options = mqtt_options(channel, &client_id(&channel.consumer))?;
    options.set_clean_session(false).set_manual_acks(true);
    let (client, mut events) = rumqttc::AsyncClient::new(options, PREFETCH as usize);
    client
        .subscribe(channel.address.clone(), QoS::AtLeastOnce)
        .await
        .map_err(broker)?;
    // Wait for the subscription to be granted before handing the subscription over.
    // A session the broker kept (after a crash) delivers what was not acknowledged as
    // soon as the connection is up, before the grant: those are kept, not dropped.
    let mut early = Vec::new();
    loop {
        match events.poll().await.map_err(broker)? {
            Event::Incoming(Packet::Publish(publish)) => early.push(publish),
            Event::Incoming(Packet::SubAck(ack)) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                {
                    return Err(broker(format!(
                        "the broker refused the subscription to `{}`",
                        channel.address
                    )));
                }
                break;
            }
            Event::Incoming(Packet::ConnAck(ack))
                if ack.code != rumqttc::ConnectReturnCode::Success =>
            {
                return Err(refused(ack.code));
            }
            _ => {}
        }
    }
    let (send, received) = tokio::sync::mpsc::channel(PREFETCH as usize);
    let poller = tokio::spawn(async move {
        for publish in early {
            if send.send(Ok(publish)).await.is_err() {
                return;
            }
        }
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    if send.send(Ok(publish)).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = send.send(Err(broker(e))).await;
                    return;
                }
            }
        }
    });
    Ok(Box::new(MqttSubscription {
        client,
        address: channel.address.clone(),
        received,
        unacked: HashMap::new(),
        next_token: 0,
        poller: tokio_util::task::AbortOnDropHandle::new(poller),
    }))
}

#[async_trait]
impl Subscription for MqttSubscription {
    async fn next(&mut self) -> Result<Option<Inbound>, MessagingError> {
        let Some(publish) = self.received.recv().await else {
            return Ok(None);
        };
        let publish = publish?;
        self.next_token += 1;
        let inbound = framed(&publish.payload, self.next_token, publish.dup);
        self.unacked.insert(self.next_token, publish);
        Ok(Some(inbound))
    }

    async fn ack(&mut self, token: u64) -> Result<(), MessagingError> {
        if let Some(publish) = self.unacked.remove(&token) {
            self.client.ack(&publish).await.map_err(broker)?;
        }
        Ok(())
    }

    /// Unsubscribes, so that the session the broker keeps for this consumer collects
    /// no more messages, and disconnects.
    async fn close(&mut self) {
        let _ = self.client.unsubscribe(self.address.clone()).await;
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), &mut self.poller).await;
    }
}

/// The AMQP URI of a channel's server, with its credentials; the virtual host is the
/// server's path (`/` by default).
fn amqp_uri(channel: &Channel) -> String {
    let mut url = channel.server.clone();
    if let Some((user, password)) = &channel.credentials {
        let _ = url.set_username(user);
        let _ = url.set_password(Some(password));
    }
    if url.path().is_empty() || url.path() == "/" {
        url.set_path("/%2f");
    }
    url.to_string()
}

async fn amqp_channel(
    channel: &Channel,
) -> Result<(lapin::Connection, lapin::Channel), MessagingError> {
    let connection =
        lapin::Connection::connect(&amqp_uri(channel), lapin::ConnectionProperties::default())
            .await
            .map_err(broker)?;
    let amqp = connection.create_channel().await.map_err(broker)?;
    amqp.queue_declare(
        channel.address.as_str().into(),
        lapin::options::QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        lapin::types::FieldTable::default(),
    )
    .await
    .map_err(broker)?;
    Ok((connection, amqp))
}

async fn amqp_publish(channel: &Channel, message: &Outbound) -> Result<(), MessagingError> {
    use lapin::types::{AMQPValue, FieldTable};
    let (connection, amqp) = amqp_channel(channel).await?;
    amqp.confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .map_err(broker)?;
    let mut headers = FieldTable::default();
    for (k, v) in &message.headers {
        headers.insert(k.as_str().into(), AMQPValue::LongString(v.as_str().into()));
    }
    let properties = lapin::BasicProperties::default()
        .with_message_id(message.id.as_str().into())
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_headers(headers);
    let confirm = amqp
        .basic_publish(
            "".into(),
            channel.address.as_str().into(),
            lapin::options::BasicPublishOptions::default(),
            &bytes(&message.payload),
            properties,
        )
        .await
        .map_err(broker)?
        .await
        .map_err(broker)?;
    if confirm.is_nack() {
        return Err(broker("the broker refused the message"));
    }
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}

struct AmqpSubscription {
    _connection: lapin::Connection,
    consumer: lapin::Consumer,
    unacked: HashMap<u64, lapin::Acker>,
}

async fn amqp_subscribe(channel: &Channel) -> Result<Box<dyn Subscription>, MessagingError> {
    let (connection, amqp) = amqp_channel(channel).await?;
    amqp.basic_qos(PREFETCH, lapin::options::BasicQosOptions::default())
        .await
        .map_err(broker)?;
    let consumer = amqp
        .basic_consume(
            channel.address.as_str().into(),
            client_id(&channel.consumer).as_str().into(),
            lapin::options::BasicConsumeOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .map_err(broker)?;
    Ok(Box::new(AmqpSubscription {
        _connection: connection,
        consumer,
        unacked: HashMap::new(),
    }))
}

/// An AMQP header value as JSON: text as text, numbers and booleans as themselves.
fn amqp_value(value: &lapin::types::AMQPValue) -> Value {
    use lapin::types::AMQPValue as V;
    match value {
        V::LongString(s) => Value::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        V::ShortString(s) => Value::String(s.as_str().to_string()),
        V::Boolean(b) => Value::Bool(*b),
        V::LongLongInt(i) => Value::from(*i),
        V::LongInt(i) => Value::from(*i),
        V::ShortInt(i) => Value::from(*i),
        V::LongUInt(i) => Value::from(*i),
        V::Double(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        other => Value::String(format!("{other:?}")),
    }
}

#[async_trait]
impl Subscription for AmqpSubscription {
    async fn next(&mut self) -> Result<Option<Inbound>, MessagingError> {
        let Some(delivery) = self.consumer.next().await else {
            return Ok(None);
        };
        let delivery = delivery.map_err(broker)?;
        let properties = &delivery.properties;
        let headers: Map<String, Value> = properties
            .headers()
            .as_ref()
            .map(|table| {
                table
                    .inner()
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), amqp_value(v)))
                    .collect()
            })
            .unwrap_or_default();
        let token = delivery.delivery_tag;
        let inbound = Inbound {
            payload: payload(&delivery.data),
            headers,
            correlation_id: properties
                .correlation_id()
                .as_ref()
                .map(|c| c.as_str().to_string()),
            id: properties
                .message_id()
                .as_ref()
                .map(|c| c.as_str().to_string()),
            redelivered: delivery.redelivered,
            token,
        };
        self.unacked.insert(token, delivery.acker);
        Ok(Some(inbound))
    }

    async fn ack(&mut self, token: u64) -> Result<(), MessagingError> {
        if let Some(acker) = self.unacked.remove(&token) {
            acker
                .ack(lapin::options::BasicAckOptions::default())
                .await
                .map_err(broker)?;
        }
        Ok(())
    }
}

/// The URL of a channel on an HTTP or WebSocket server: the server's, with the
/// channel's address added to its path.
fn channel_url(channel: &Channel) -> url::Url {
    let mut url = channel.server.clone();
    let path = format!(
        "{}/{}",
        url.path().trim_end_matches('/'),
        channel.address.trim_start_matches('/')
    );
    url.set_path(&path);
    url
}

/// Over HTTP, a subscription reads the channel's URL as a stream of server-sent events,
/// each event's data a message (there are no acknowledgements; an event's id, when it
/// has one, is the message's).
struct HttpSubscription {
    events: std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<eventsource_stream::Event, String>> + Send>,
    >,
    next_token: u64,
}

async fn http_subscribe(
    channel: &Channel,
    client: reqwest::Client,
) -> Result<Box<dyn Subscription>, MessagingError> {
    use eventsource_stream::Eventsource as _;
    let mut request = client
        .get(channel_url(channel))
        .header("accept", "text/event-stream");
    if let Some(authorization) = &channel.authorization {
        request = request.header("authorization", authorization);
    }
    let response = request.send().await.map_err(broker)?;
    if !response.status().is_success() {
        return Err(broker(format!(
            "HTTP {} from GET {}",
            response.status(),
            response.url()
        )));
    }
    let events = response
        .bytes_stream()
        .eventsource()
        .map(|e| e.map_err(|e| e.to_string()));
    Ok(Box::new(HttpSubscription {
        events: Box::pin(events),
        next_token: 0,
    }))
}

#[async_trait]
impl Subscription for HttpSubscription {
    async fn next(&mut self) -> Result<Option<Inbound>, MessagingError> {
        let Some(event) = self.events.next().await else {
            return Ok(None);
        };
        let event = event.map_err(broker)?;
        self.next_token += 1;
        let mut inbound = framed(event.data.as_bytes(), self.next_token, false);
        if !event.id.is_empty() {
            inbound.id = Some(event.id);
        }
        Ok(Some(inbound))
    }

    async fn ack(&mut self, _token: u64) -> Result<(), MessagingError> {
        Ok(())
    }
}

async fn ws_connect(
    channel: &Channel,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    MessagingError,
> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut request = channel_url(channel)
        .to_string()
        .into_client_request()
        .map_err(broker)?;
    if let Some(authorization) = &channel.authorization
        && let Ok(value) = authorization.parse()
    {
        request.headers_mut().insert("authorization", value);
    }
    let (stream, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(broker)?;
    Ok(stream)
}

async fn ws_publish(channel: &Channel, message: &Outbound) -> Result<(), MessagingError> {
    use tokio_tungstenite::tungstenite::Message;
    let mut stream = ws_connect(channel).await?;
    let text = String::from_utf8_lossy(&bytes(&message.payload)).into_owned();
    stream.send(Message::text(text)).await.map_err(broker)?;
    let _ = stream.close(None).await;
    Ok(())
}

/// A WebSocket has no acknowledgements: a message is taken when it is read.
struct WsSubscription {
    stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_token: u64,
}

async fn ws_subscribe(channel: &Channel) -> Result<Box<dyn Subscription>, MessagingError> {
    Ok(Box::new(WsSubscription {
        stream: ws_connect(channel).await?,
        next_token: 0,
    }))
}

#[async_trait]
impl Subscription for WsSubscription {
    async fn next(&mut self) -> Result<Option<Inbound>, MessagingError> {
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let Some(message) = self.stream.next().await else {
                return Ok(None);
            };
            let data = match message.map_err(broker)? {
                Message::Text(text) => text.as_bytes().to_vec(),
                Message::Binary(data) => data.to_vec(),
                Message::Close(_) => return Ok(None),
                _ => continue,
            };
            self.next_token += 1;
            return Ok(Some(framed(&data, self.next_token, false)));
        }
    }

    async fn ack(&mut self, _token: u64) -> Result<(), MessagingError> {
        Ok(())
    }
}
