using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Time.Testing;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.Engine.Fronts;
using ProxySelection.Relay;

namespace ProxySelection.Engine.Tests.Fronts;

/// <summary>
/// A front driven over loopback sockets (no root): clients from 127.0.0.2 and 127.0.0.1, the front on 127.0.0.1 with
/// a TCP listener, and an upstream that takes every CONNECT to an echo server on loopback (the front itself refuses
/// loopback destinations, so the clients name 198.18.3.2:80).
/// </summary>
[NonParallelizable]
public sealed class HostConfiguredFrontTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private static readonly IPAddress Crowd = IPAddress.Parse("127.0.0.2");
    private static readonly IPAddress Other = IPAddress.Parse("127.0.0.1");
    private static readonly byte[] Connect = [5, 1, 0, 1, 198, 18, 3, 2, 0, 80];

    [Test]
    public async Task Socks_IdleClientsFromOneSourceBeyondItsBound_RefusedWhileAnotherSourceIsServed()
    {
        await using var rig = await Rig.StartAsync(new SourceLimits(maxHandshakes: 8, maxHandshakesPerSource: 3, maxConnectionsPerSource: 100));
        var idle = await rig.OpenIdleAsync(Crowd, 10);
        await rig.WaitAsync(() => rig.Front.Counters.Refused == 7, "seven of the crowd refused");

        var served = await rig.EchoThroughSocksAsync(Other);

        Assert.Multiple(() =>
        {
            Assert.That(served, Is.True, "a client from another source completes its CONNECT and its data");
            Assert.That(rig.Limits.CountsOf(Crowd), Is.EqualTo((3, 3)), "the crowd holds its own share");
            Assert.That(rig.Front.Counters.Connected, Is.EqualTo(1));
        });
        foreach (var socket in idle)
        {
            socket.Dispose();
        }
    }

    [Test]
    public async Task Socks_GlobalHandshakeBound_StillKeptAcrossSources()
    {
        // Per-source as wide as the global bound: the global bound alone, as before issue 12.
        await using var rig = await Rig.StartAsync(new SourceLimits(maxHandshakes: 4, maxHandshakesPerSource: 4, maxConnectionsPerSource: 100));
        var idle = await rig.OpenIdleAsync(Crowd, 4);
        await rig.WaitAsync(() => rig.Limits.Handshakes == 4, "four in their handshake");

        var served = await rig.EchoThroughSocksAsync(Other);

        Assert.Multiple(() =>
        {
            Assert.That(served, Is.False, "the global bound refuses the fifth client, whatever its source");
            Assert.That(rig.Front.Counters.Refused, Is.EqualTo(1));
        });
        foreach (var socket in idle)
        {
            socket.Dispose();
        }
    }

    [Test]
    public async Task Socks_SourceAtItsConnectionBound_NextClientOfItRefusedOtherSourceServed()
    {
        await using var rig = await Rig.StartAsync(new SourceLimits(maxHandshakes: 16, maxHandshakesPerSource: 16, maxConnectionsPerSource: 2));
        using var first = await rig.RelayedAsync(Crowd);
        using var second = await rig.RelayedAsync(Crowd);

        var third = await rig.EchoThroughSocksAsync(Crowd);
        var other = await rig.EchoThroughSocksAsync(Other);

        Assert.Multiple(() =>
        {
            Assert.That(third, Is.False, "two held connections are the source's bound");
            Assert.That(other, Is.True);
            Assert.That(rig.Limits.CountsOf(Crowd), Is.EqualTo((0, 2)), "held, past their handshake");
        });
    }

    [Test]
    public async Task Socks_ClientsOfASourceGone_SourceForgotten()
    {
        await using var rig = await Rig.StartAsync(new SourceLimits(maxHandshakes: 8, maxHandshakesPerSource: 3, maxConnectionsPerSource: 100));
        var idle = await rig.OpenIdleAsync(Crowd, 3);
        await rig.WaitAsync(() => rig.Limits.CountsOf(Crowd) == (3, 3), "three in their handshake");

        foreach (var socket in idle)
        {
            socket.Dispose();
        }

        await rig.WaitAsync(() => rig.Limits.CountsOf(Crowd) == (0, 0) && rig.Limits.Handshakes == 0, "the closed clients' slots released");
        Assert.That(await rig.EchoThroughSocksAsync(Crowd), Is.True, "the source is served again");
    }

    [Test]
    public async Task Convert_InfoTlvOverLoopback_SupportedTcpExtensionsThenClose()
    {
        await using var rig = await Rig.StartAsync(new SourceLimits(8, 4, 100), convert: true);
        using var client = await rig.ConnectFromAsync(Other);
        using var timeout = new CancellationTokenSource(Timeout);
        await client.SendAsync(new byte[] { 1, 2, 0x22, 0x63, 1, 1, 0, 0 }, SocketFlags.None, timeout.Token);

        var received = await ReadToEndAsync(client, timeout.Token);

        Assert.Multiple(() =>
        {
            Assert.That(received, Is.EqualTo(new byte[] { 1, 3, 0x22, 0x63, 21, 2, 0, 0, 30, 0, 0, 0 }));
            Assert.That(rig.Front.Counters.HandshakeFailed, Is.Zero);
        });
    }

    [Test]
    public async Task Convert_AtCapacity_ResourceExceededThenClose()
    {
        await using var rig = await Rig.StartAsync(new SourceLimits(8, 4, 100), convert: true, slots: 0);
        using var client = await rig.ConnectFromAsync(Other);
        using var timeout = new CancellationTokenSource(Timeout);
        await client.SendAsync(ConvertHandshake.ConnectMessage(IPEndPoint.Parse("198.18.3.2:80")), SocketFlags.None, timeout.Token);

        var received = await ReadToEndAsync(client, timeout.Token);

        Assert.That(received, Is.EqualTo(new byte[] { 1, 2, 0x22, 0x63, 30, 1, 64, 1 }), "Resource Exceeded, retry after 1 s");
    }

    [Test]
    public async Task Socks_ClientInItsHandshakeWhenTheDrainBegins_IsServed_AndTheListenerThenCloses()
    {
        await using var rig = await Rig.StartAsync(new SourceLimits(8, 4, 100));
        using var client = await rig.ConnectFromAsync(Other);
        using var timeout = new CancellationTokenSource(Timeout);
        await client.SendAsync(new byte[] { 5, 1, 0 }, SocketFlags.None, timeout.Token);
        await Rig.ReceiveExactlyAsync(client, new byte[2], timeout.Token);

        rig.Front.BeginDrain();
        await rig.WaitAsync(() => !rig.Front.IsListening, "the listener closed after its grace (none)");
        await client.SendAsync(Connect, SocketFlags.None, timeout.Token);
        var reply = new byte[10];
        await Rig.ReceiveExactlyAsync(client, reply, timeout.Token);
        await client.SendAsync("ping"u8.ToArray(), SocketFlags.None, timeout.Token);
        var echo = new byte[4];
        await Rig.ReceiveExactlyAsync(client, echo, timeout.Token);

        Assert.Multiple(() =>
        {
            Assert.That(reply[1], Is.Zero, "succeeded, not refused (reply 1) because a drain began");
            Assert.That(echo, Is.EqualTo("ping"u8.ToArray()), "relayed");
            Assert.That(rig.Front.Counters.Refused, Is.Zero);
            Assert.ThrowsAsync<SocketException>(() => rig.ConnectFromAsync(Other), "no new client once the listener closed");
        });
    }

    [Test]
    public async Task Socks_DrainGrace_NewClientsServedUntilItEnds_ThenTheListenerCloses()
    {
        var time = new FakeTimeProvider();
        await using var rig = await Rig.StartAsync(new SourceLimits(8, 4, 100), grace: TimeSpan.FromSeconds(2), time: time);

        rig.Front.BeginDrain();
        time.Advance(TimeSpan.FromMilliseconds(1900));
        bool served = await rig.EchoThroughSocksAsync(Other);
        bool listening = rig.Front.IsListening;
        time.Advance(TimeSpan.FromMilliseconds(100));
        await rig.WaitAsync(() => !rig.Front.IsListening, "the listener closed at the grace's end");

        Assert.Multiple(() =>
        {
            Assert.That(served, Is.True, "a client that arrives within the grace is served");
            Assert.That(listening, Is.True, "still listening within the grace");
            Assert.That(rig.Front.Counters.Refused, Is.Zero);
            Assert.ThrowsAsync<SocketException>(() => rig.ConnectFromAsync(Other), "no new client after the grace");
        });
    }

    private static async Task<byte[]> ReadToEndAsync(Socket socket, CancellationToken cancellationToken)
    {
        using var received = new MemoryStream();
        var buffer = new byte[256];
        try
        {
            int read;
            while ((read = await socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken)) > 0)
            {
                received.Write(buffer, 0, read);
            }
        }
        catch (SocketException)
        {
            // A reset after the reply: what arrived counts.
        }

        return received.ToArray();
    }

    /// <summary>The front, its echo server, and what the test reads back.</summary>
    private sealed class Rig : IAsyncDisposable, IFrontAdmission, IFrontUpstream, IFrontTelemetry
    {
        private readonly CancellationTokenSource _stopping = new();
        private readonly ConcurrentBag<Task> _connections = [];
        private readonly TcpListener _echo = new(Other, 0);
        private readonly UpstreamConnector _connector = new(new UpstreamConnectorOptions(), SocketFactory.Default, TimeProvider.System);
        private RelayServer _relay = null!;
        private Task _echoLoop = Task.CompletedTask;
        private int _slots;

        private Rig(SourceLimits limits, int slots)
        {
            Limits = limits;
            _slots = slots;
        }

        public SourceLimits Limits { get; }

        public HostConfiguredFront Front { get; private set; } = null!;

        public static Task<Rig> StartAsync(SourceLimits limits, bool convert = false, int slots = 100, TimeSpan grace = default, TimeProvider? time = null)
        {
            var rig = new Rig(limits, slots);
            rig._echo.Start();
            rig._echoLoop = rig.EchoAsync();
            rig._relay = new RelayServer(new RelayOptions { ClientProtocol = TransportProtocol.Tcp, UpstreamProtocol = TransportProtocol.Tcp },
                new ListenerOptions(), SocketFactory.Default, rig._connector, TimeProvider.System, static _ => { });
            var services = new FrontServices(rig, rig, rig, rig._relay, limits, new LocalAddresses(TimeProvider.System, () => []), new LogBudget(TimeProvider.System),
                time ?? TimeProvider.System, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, rig._stopping.Token, TransportProtocol.Tcp);
            var options = new SocksOptions { HandshakeTimeout = TimeSpan.FromMinutes(1), DrainAcceptGrace = grace };
            var listen = new IPEndPoint(Other, 0);
            rig.Front = convert
                ? HostConfiguredFront.Convert(listen, options, new SocksCounters(), services)
                : HostConfiguredFront.Socks(listen, options, new SocksCounters(), services);
            rig.Front.Start();
            return Task.FromResult(rig);
        }

        public async Task<Socket> ConnectFromAsync(IPAddress source)
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                socket.Bind(new IPEndPoint(source, 0));
                using var timeout = new CancellationTokenSource(Timeout);
                await socket.ConnectAsync(Front.EndPoint!, timeout.Token);
                return socket;
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }

        /// <summary>Clients that connect and send nothing (those the front resets at once may see the reset in their connect).</summary>
        public async Task<List<Socket>> OpenIdleAsync(IPAddress source, int count)
        {
            var sockets = new List<Socket>();
            for (int i = 0; i < count; i++)
            {
                try
                {
                    sockets.Add(await ConnectFromAsync(source));
                }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
                {
                }
            }

            return sockets;
        }

        /// <summary>A SOCKS5 CONNECT, then "ping" through the relay: true when the echo came back.</summary>
        public async Task<bool> EchoThroughSocksAsync(IPAddress source)
        {
            try
            {
                using var socket = await RelayedAsync(source);
                using var timeout = new CancellationTokenSource(Timeout);
                await socket.SendAsync("ping"u8.ToArray(), SocketFlags.None, timeout.Token);
                var echo = new byte[4];
                await ReceiveExactlyAsync(socket, echo, timeout.Token);
                return echo.AsSpan().SequenceEqual("ping"u8);
            }
            catch (SocketException)
            {
                return false;
            }
        }

        /// <summary>A client past its CONNECT (the success reply read), its relay open.</summary>
        public async Task<Socket> RelayedAsync(IPAddress source)
        {
            var socket = await ConnectFromAsync(source);
            try
            {
                using var timeout = new CancellationTokenSource(Timeout);
                await socket.SendAsync(new byte[] { 5, 1, 0 }, SocketFlags.None, timeout.Token);
                var method = new byte[2];
                await ReceiveExactlyAsync(socket, method, timeout.Token);
                await socket.SendAsync(Connect, SocketFlags.None, timeout.Token);
                var reply = new byte[10];
                await ReceiveExactlyAsync(socket, reply, timeout.Token);
                if (reply[1] != 0)
                {
                    throw new SocketException((int)SocketError.ConnectionRefused);
                }

                return socket;
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }

        public static async Task ReceiveExactlyAsync(Socket socket, byte[] buffer, CancellationToken cancellationToken)
        {
            int filled = 0;
            while (filled < buffer.Length)
            {
                int read = await socket.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None, cancellationToken);
                if (read == 0)
                {
                    throw new SocketException((int)SocketError.ConnectionReset);
                }

                filled += read;
            }
        }

        public async Task WaitAsync(Func<bool> condition, string what)
        {
            var deadline = DateTime.UtcNow + Timeout;
            while (!condition())
            {
                if (DateTime.UtcNow > deadline)
                {
                    Assert.Fail("timed out waiting: " + what);
                }

                await Task.Delay(20);
            }
        }

        private async Task EchoAsync()
        {
            while (true)
            {
                Socket accepted;
                try
                {
                    accepted = await _echo.AcceptSocketAsync(_stopping.Token);
                }
                catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
                {
                    return;
                }

                _ = Task.Run(async () =>
                {
                    using var socket = accepted;
                    var buffer = new byte[1024];
                    try
                    {
                        int read;
                        while ((read = await socket.ReceiveAsync(buffer, SocketFlags.None, _stopping.Token)) > 0)
                        {
                            await socket.SendAsync(buffer.AsMemory(0, read), SocketFlags.None, _stopping.Token);
                        }
                    }
                    catch (Exception e) when (e is OperationCanceledException or SocketException)
                    {
                    }
                });
            }
        }

        public bool TryTakeSlot() => Interlocked.Decrement(ref _slots) >= 0 || Interlocked.Increment(ref _slots) < 0;

        public void ReleaseSlot() => Interlocked.Increment(ref _slots);

        public void Track(Task connection) => _connections.Add(connection);

        public TransportProtocol ProtocolFor(IPEndPoint destination) => TransportProtocol.Tcp;

        public async ValueTask<UpstreamConnectResult> ConnectAsync(IPEndPoint destination, TransportProtocol protocol, CancellationToken cancellationToken)
        {
            // Every destination is the echo server; from 127.0.0.3, so the front does not take the leg for a self-connection.
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            socket.Bind(new IPEndPoint(IPAddress.Parse("127.0.0.3"), 0));
            await socket.ConnectAsync((IPEndPoint)_echo.LocalEndpoint, cancellationToken);
            return new UpstreamConnectResult(UpstreamConnectStatus.Connected, socket, SocketError.Success);
        }

        public void OnUpstreamFailed(IPEndPoint destination)
        {
        }

        public void Accepted()
        {
        }

        public ConnectionTrace? Started(IPEndPoint? client, Socks5Target target, uint token, string? user, string front) => null;

        public void UpstreamConnected(ConnectionTrace trace, Socket upstream)
        {
        }

        public void Relaying(FlowEndPoints flow, long acceptedAt)
        {
        }

        public void RelayEnded(FlowEndPoints flow)
        {
        }

        public void Relayed(ConnectionTrace? trace, RelayResult result)
        {
        }

        public async ValueTask DisposeAsync()
        {
            await _stopping.CancelAsync();
            Front.StopListening();
            await _relay.DisposeAsync();
            _echo.Stop();
            await Task.WhenAll([Front.AcceptLoop, _echoLoop, .. _connections]).WaitAsync(Timeout);
            await _connector.DisposeAsync();
            _stopping.Dispose();
        }
    }
}
