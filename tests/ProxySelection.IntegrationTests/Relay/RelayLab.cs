using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Threading.Channels;
using ProxySelection.Lab;
using ProxySelection.Relay;

namespace ProxySelection.IntegrationTests.Relay;

/// <summary>Creates every socket inside one network namespace (the relay's sockets live in the proxy namespace).</summary>
internal sealed class NamespaceSocketFactory(NetNamespace ns) : SocketFactory
{
    public override Socket Create(AddressFamily family, TransportProtocol protocol) =>
        // Blocking on purpose: setns is per thread, so creation runs on the Lab's namespace thread, synchronously.
        ns.RunInNamespaceAsync(() => base.Create(family, protocol)).WaitAsync(RelayLab.Timeout).GetAwaiter().GetResult();
}

/// <summary>
/// The two-path lab with a relay in the proxy namespace: the client dials the proxy's path1 address (the relay's
/// listener; no TPROXY needed), the relay dials the server. Results land in <see cref="Results"/>.
/// </summary>
internal sealed class RelayLab : IAsyncDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private readonly Channel<RelayResult> _results = Channel.CreateUnbounded<RelayResult>();

    private RelayLab(ProxySelection.Lab.Lab lab, TwoPathTopology topology)
    {
        Lab = lab;
        Topology = topology;
    }

    public ProxySelection.Lab.Lab Lab { get; }
    public TwoPathTopology Topology { get; }
    public RelayServer Relay { get; private set; } = null!;
    public UpstreamConnector Connector { get; private set; } = null!;
    public TransparentListener Listener { get; private set; } = null!;
    public ChannelReader<RelayResult> Results => _results.Reader;

    /// <summary>Creates sockets in the proxy namespace (the relay's own factory).</summary>
    public SocketFactory Sockets { get; private set; } = null!;

    /// <summary>The server the relay forwards to (in the server namespace), one per lab.</summary>
    public IPEndPoint ServerEndPoint { get; private set; } = null!;

    /// <summary>Where clients connect: the relay's listener on the proxy's path1 address.</summary>
    public IPEndPoint RelayEndPoint { get; private set; } = null!;

    public static async Task<RelayLab> StartAsync(
        RelayOptions? options = null,
        UpstreamConnectorOptions? connectorOptions = null,
        AddressFamily family = AddressFamily.InterNetwork,
        int serverPort = 8080,
        bool intercept = false,
        TimeProvider? relayTime = null,
        TimeProvider? connectorTime = null)
    {
        var lab = ProxySelection.Lab.Lab.Create();
        try
        {
            var topology = await TwoPathTopology.BuildAsync(lab).WaitAsync(Timeout);
            var relayLab = new RelayLab(lab, topology);
            if (intercept)
            {
                await relayLab.InterceptAsync(family, serverPort).WaitAsync(Timeout);
            }
            relayLab.Start(
                options ?? new RelayOptions(),
                connectorOptions ?? new UpstreamConnectorOptions(),
                family,
                serverPort,
                intercept,
                relayTime ?? TimeProvider.System,
                connectorTime ?? TimeProvider.System);
            return relayLab;
        }
        catch
        {
            await lab.DisposeAsync().AsTask().WaitAsync(Timeout);
            throw;
        }
    }

    private void Start(
        RelayOptions options,
        UpstreamConnectorOptions connectorOptions,
        AddressFamily family,
        int serverPort,
        bool intercept,
        TimeProvider relayTime,
        TimeProvider connectorTime)
    {
        bool v6 = family == AddressFamily.InterNetworkV6;
        ServerEndPoint = new IPEndPoint(IPAddress.Parse(v6 ? TwoPathTopology.ServerV6 : TwoPathTopology.ServerV4), serverPort);
        Sockets = new NamespaceSocketFactory(Topology.Proxy);
        var sockets = Sockets;
        Connector = new UpstreamConnector(connectorOptions, sockets, connectorTime);
        Relay = new RelayServer(
            options,
            new ListenerOptions(),
            sockets,
            Connector,
            relayTime,
            result => _results.Writer.TryWrite(result),
            intercept ? null : _ => ServerEndPoint);
        if (intercept)
        {
            // TPROXY keeps the original port: the listener sits on the server's port and the client dials the server.
            Listener = Relay.EnsureListener(serverPort, family);
            RelayEndPoint = ServerEndPoint;
        }
        else
        {
            Listener = Relay.EnsureListener(0, family);
            RelayEndPoint = new IPEndPoint(IPAddress.Parse(v6 ? TwoPathTopology.ProxyPath1V6 : TwoPathTopology.ProxyPath1V4), Listener.LocalEndPoint.Port);
        }
    }

    /// <summary>
    /// The textbook TPROXY setup in the proxy namespace (the Interception project owns the product's ruleset):
    /// SYNs to the server's port go to the local transparent listener on that same port (on-port 0), and packets
    /// for our transparent sockets (a foreign source address upstream) are delivered locally.
    /// </summary>
    private async Task InterceptAsync(AddressFamily family, int port)
    {
        bool v6 = family == AddressFamily.InterNetworkV6;
        string tables = v6 ? "ip6tables" : "iptables";
        string server = v6 ? TwoPathTopology.ServerV6 : TwoPathTopology.ServerV4;
        var proxy = Topology.Proxy;
        foreach (var rule in new[]
        {
            new[] { "-t", "mangle", "-N", "PSDIVERT" },
            ["-t", "mangle", "-A", "PSDIVERT", "-j", "MARK", "--set-xmark", "0x1/0x1"],
            ["-t", "mangle", "-A", "PSDIVERT", "-j", "ACCEPT"],
            ["-t", "mangle", "-A", "PREROUTING", "-p", "tcp", "-m", "socket", "--transparent", "-j", "PSDIVERT"],
            ["-t", "mangle", "-A", "PREROUTING", "-p", "tcp", "-d", server, "--dport", $"{port}", "-j", "TPROXY", "--on-port", "0", "--tproxy-mark", "0x1/0x1"],
        })
        {
            await proxy.CheckAsync(tables, rule).WaitAsync(Timeout);
        }
        string family6 = v6 ? "-6" : "-4";
        await proxy.IpAsync(family6, "rule", "add", "fwmark", "0x1/0x1", "lookup", "100").WaitAsync(Timeout);
        await proxy.IpAsync(family6, "route", "add", "local", v6 ? "::/0" : "0.0.0.0/0", "dev", "lo", "table", "100").WaitAsync(Timeout);
    }

    /// <summary>A listening TCP (or MPTCP) socket on the server's address (or another port of it).</summary>
    public Task<Socket> ListenOnServerAsync(TransportProtocol protocol = TransportProtocol.Tcp, int? port = null) =>
        Topology.Server.RunInNamespaceAsync(() =>
        {
            var listener = SocketFactory.Default.Create(ServerEndPoint.AddressFamily, protocol);
            listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            listener.Bind(new IPEndPoint(ServerEndPoint.Address, port ?? ServerEndPoint.Port));
            listener.Listen();
            return listener;
        }).WaitAsync(Timeout);

    /// <summary>A client socket in the client namespace, connected to the relay.</summary>
    public async Task<Socket> ConnectClientAsync(TransportProtocol protocol = TransportProtocol.Mptcp)
    {
        var socket = await Topology.Client.RunInNamespaceAsync(() => SocketFactory.Default.Create(RelayEndPoint.AddressFamily, protocol)).WaitAsync(Timeout);
        using var cts = new CancellationTokenSource(Timeout);
        try
        {
            await socket.ConnectAsync(RelayEndPoint, cts.Token);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        return socket;
    }

    /// <summary>
    /// A server listener, a client connected through the relay, and the server socket that accepted it: the start of
    /// most relay tests.
    /// </summary>
    public async Task<RelayedPair> ConnectPairAsync(TransportProtocol clientProtocol = TransportProtocol.Mptcp, TransportProtocol serverProtocol = TransportProtocol.Tcp)
    {
        var listener = await ListenOnServerAsync(serverProtocol);
        Socket? client = null;
        try
        {
            client = await ConnectClientAsync(clientProtocol);
            return new RelayedPair(listener, client, await TestSockets.AcceptAsync(listener));
        }
        catch
        {
            client?.Dispose();
            listener.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Connects a client that the relay is expected to turn away, and returns what the client saw: a reset that
    /// arrives before an MPTCP connect() has returned fails the connect itself, a later one fails the first read.
    /// </summary>
    public async Task<SocketError> ConnectRejectedClientAsync(TransportProtocol protocol = TransportProtocol.Mptcp)
    {
        Socket socket;
        try
        {
            socket = await ConnectClientAsync(protocol);
        }
        catch (SocketException e)
        {
            return e.SocketErrorCode;
        }
        using (socket)
        {
            return await TestSockets.ReadUntilClosedAsync(socket);
        }
    }

    /// <summary>The one live relayed connection (it registers just after the upstream connect; poll, bounded).</summary>
    public async Task<RelayConnection> SingleConnectionAsync()
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (DateTime.UtcNow < deadline)
        {
            var connections = Relay.Connections;
            if (connections.Count == 1)
            {
                return connections.Single();
            }
            await Task.Delay(10);
        }
        throw new TimeoutException($"expected one relayed connection, have {Relay.Connections.Count}");
    }

    /// <summary>The next result within <paramref name="wait"/>, or null.</summary>
    public async Task<RelayResult?> TryNextResultAsync(TimeSpan wait)
    {
        using var cts = new CancellationTokenSource(wait);
        try
        {
            return await _results.Reader.ReadAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    public async Task<RelayResult> NextResultAsync()
    {
        using var cts = new CancellationTokenSource(Timeout);
        return await _results.Reader.ReadAsync(cts.Token);
    }

    /// <summary>Stops the relay, then removes the namespaces even when stopping failed or timed out.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            if (Relay is not null)
            {
                await Relay.DisposeAsync().AsTask().WaitAsync(Timeout);
            }
            if (Connector is not null)
            {
                await Connector.DisposeAsync().AsTask().WaitAsync(Timeout);
            }
        }
        finally
        {
            await Lab.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(60));
        }
    }
}

/// <summary>A client and the server socket it reached through the relay; disposing closes both and the listener.</summary>
internal sealed class RelayedPair(Socket listener, Socket client, Socket server) : IDisposable
{
    public Socket Client { get; } = client;

    public Socket Server { get; } = server;

    /// <summary>Four bytes from the client read by the server: the relay has both legs up and has copied data.</summary>
    public async Task PingAsync()
    {
        await TestSockets.SendAsync(Client, "ping"u8.ToArray());
        await TestSockets.ReadExactlyAsync(Server, 4);
    }

    /// <summary>What each side saw of its peer, read at once on both (see <see cref="TestSockets.ReadUntilClosedAsync"/>).</summary>
    public async Task<(SocketError Client, SocketError Server)> ReadUntilClosedAsync()
    {
        var client = TestSockets.ReadUntilClosedAsync(Client);
        var server = TestSockets.ReadUntilClosedAsync(Server);
        return (await client, await server);
    }

    public void Dispose()
    {
        Client.Dispose();
        Server.Dispose();
        listener.Dispose();
    }
}

/// <summary>Socket helpers for tests: every wait is bounded.</summary>
internal static class TestSockets
{
    public static async Task<Socket> AcceptAsync(Socket listener)
    {
        using var cts = new CancellationTokenSource(RelayLab.Timeout);
        return await listener.AcceptAsync(cts.Token);
    }

    public static async Task SendAsync(Socket socket, ReadOnlyMemory<byte> data)
    {
        using var cts = new CancellationTokenSource(RelayLab.Timeout);
        while (!data.IsEmpty)
        {
            int sent = await socket.SendAsync(data, SocketFlags.None, cts.Token);
            data = data[sent..];
        }
    }

    /// <summary>Reads until EOF (or <paramref name="limit"/> bytes); returns everything read.</summary>
    public static async Task<byte[]> ReadToEndAsync(Socket socket, int limit = 64 * 1024 * 1024)
    {
        using var cts = new CancellationTokenSource(RelayLab.Timeout);
        using var collected = new MemoryStream();
        var buffer = new byte[64 * 1024];
        while (collected.Length < limit)
        {
            int n = await socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
            if (n == 0)
            {
                break;
            }
            collected.Write(buffer, 0, n);
        }
        return collected.ToArray();
    }

    /// <summary>Reads exactly <paramref name="count"/> bytes or fails.</summary>
    public static async Task<byte[]> ReadExactlyAsync(Socket socket, int count)
    {
        using var cts = new CancellationTokenSource(RelayLab.Timeout);
        var buffer = new byte[count];
        int read = 0;
        while (read < count)
        {
            int n = await socket.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, cts.Token);
            if (n == 0)
            {
                throw new EndOfStreamException($"EOF after {read} of {count} bytes");
            }
            read += n;
        }
        return buffer;
    }

    /// <summary>Sends <paramref name="total"/> pseudo-random bytes in chunks; returns their SHA-256.</summary>
    public static async Task<byte[]> SendRandomAsync(Socket socket, long total, int seed)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var random = new Random(seed);
        var chunk = new byte[128 * 1024];
        long sent = 0;
        while (sent < total)
        {
            int size = (int)Math.Min(chunk.Length, total - sent);
            random.NextBytes(chunk.AsSpan(0, size));
            hash.AppendData(chunk, 0, size);
            var data = chunk.AsMemory(0, size);
            while (!data.IsEmpty)
            {
                int n = await socket.SendAsync(data, SocketFlags.None, cts.Token);
                data = data[n..];
            }
            sent += size;
        }
        return hash.GetHashAndReset();
    }

    /// <summary>Reads to EOF hashing everything; returns (bytes, SHA-256).</summary>
    public static async Task<(long Bytes, byte[] Hash)> ReceiveHashAsync(Socket socket)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[128 * 1024];
        long total = 0;
        while (true)
        {
            int n = await socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
            if (n == 0)
            {
                return (total, hash.GetHashAndReset());
            }
            hash.AppendData(buffer, 0, n);
            total += n;
        }
    }

    /// <summary>
    /// Sends <paramref name="total"/> pseudo-random bytes each way at once, each side shutting its send side when done,
    /// and reads both to EOF; every wait bounded by 60 s.
    /// </summary>
    public static async Task<BothWays> SendBothWaysAsync(Socket client, Socket server, long total, int clientSeed, int serverSeed)
    {
        var timeout = TimeSpan.FromSeconds(60);
        var serverReceives = ReceiveHashAsync(server);
        var clientReceives = ReceiveHashAsync(client);
        var clientSends = Task.Run(() => SendRandomThenShutdownAsync(client, total, clientSeed));
        var serverSends = Task.Run(() => SendRandomThenShutdownAsync(server, total, serverSeed));
        var sentUp = await clientSends.WaitAsync(timeout);
        var sentDown = await serverSends.WaitAsync(timeout);
        var receivedUp = await serverReceives.WaitAsync(timeout);
        var receivedDown = await clientReceives.WaitAsync(timeout);
        return new BothWays(sentUp, receivedUp.Bytes, receivedUp.Hash, sentDown, receivedDown.Bytes, receivedDown.Hash);
    }

    /// <summary>
    /// What the peer did to us: reads until EOF or error. Returns Success for a clean EOF, else the socket error
    /// (ConnectionReset for a RST).
    /// </summary>
    public static async Task<SocketError> ReadUntilClosedAsync(Socket socket)
    {
        using var cts = new CancellationTokenSource(RelayLab.Timeout);
        var buffer = new byte[64 * 1024];
        try
        {
            while (await socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token) > 0)
            {
            }
            return SocketError.Success;
        }
        catch (SocketException e)
        {
            return e.SocketErrorCode;
        }
    }

    private static async Task<byte[]> SendRandomThenShutdownAsync(Socket socket, long total, int seed)
    {
        var hash = await SendRandomAsync(socket, total, seed);
        socket.Shutdown(SocketShutdown.Send);
        return hash;
    }

    public static void Abort(Socket socket)
    {
        socket.LingerState = new LingerOption(true, 0);
        socket.Dispose();
    }
}

/// <summary>What <see cref="TestSockets.SendBothWaysAsync"/> sent and received: SHA-256 of each direction, byte counts as received.</summary>
internal readonly record struct BothWays(byte[] SentUp, long ReceivedUpBytes, byte[] ReceivedUp, byte[] SentDown, long ReceivedDownBytes, byte[] ReceivedDown);
