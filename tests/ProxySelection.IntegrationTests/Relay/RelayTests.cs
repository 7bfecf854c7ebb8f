using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Time.Testing;
using ProxySelection.Lab;
using ProxySelection.Relay;

namespace ProxySelection.IntegrationTests.Relay;

/// <summary>
/// Client (two paths, MPTCP) → relay in the proxy namespace → server, on the real kernel. The relay is the
/// library's own code running in this process with its sockets created in the proxy namespace.
/// </summary>
[TestFixture]
public sealed class RelayTests
{
    private const long TwentyMegabytes = 20L * 1024 * 1024;
    private static readonly TimeSpan Timeout = RelayLab.Timeout;

    [TestCase(AddressFamily.InterNetwork)]
    [TestCase(AddressFamily.InterNetworkV6)]
    public async Task Relay_MptcpClientWithTwoSubflowsToTcpServer_Relays20MBEachWayIntact(AddressFamily family)
    {
        await using var lab = await RelayLab.StartAsync(family: family);
        using var pair = await lab.ConnectPairAsync();
        var connection = await lab.SingleConnectionAsync();

        // A first exchange, then wait for the second path's MP_JOIN before the bulk transfer.
        await TestSockets.SendAsync(pair.Client, new byte[1000]);
        await TestSockets.ReadExactlyAsync(pair.Server, 1000);
        var live = await WaitForClientSubflowsAsync(connection, 2);

        var both = await TestSockets.SendBothWaysAsync(pair.Client, pair.Server, TwentyMegabytes, clientSeed: 1, serverSeed: 2);
        var result = await lab.NextResultAsync();

        Assert.That(live.Status, Is.EqualTo(MptcpStatus.Active));
        Assert.That(live.Info.Subflows, Is.EqualTo(2), live.ToString());
        Assert.That(live.Subflows, Has.Length.EqualTo(2));
        Assert.That(both.ReceivedUpBytes, Is.EqualTo(TwentyMegabytes));
        Assert.That(both.ReceivedUp, Is.EqualTo(both.SentUp), "client → server SHA-256");
        Assert.That(both.ReceivedDownBytes, Is.EqualTo(TwentyMegabytes));
        Assert.That(both.ReceivedDown, Is.EqualTo(both.SentDown), "server → client SHA-256");
        Assert.That(result.Reason, Is.EqualTo(CloseReason.Completed));
        Assert.That(result.BytesClientToUpstream, Is.EqualTo(TwentyMegabytes + 1000));
        Assert.That(result.BytesUpstreamToClient, Is.EqualTo(TwentyMegabytes));
        Assert.That(result.ClientMaxSubflows, Is.EqualTo(2));
        Assert.That(result.ClientMptcp.Status, Is.EqualTo(MptcpStatus.Active));
        Assert.That(result.UpstreamMptcp.Status, Is.EqualTo(MptcpStatus.NotMptcp));
        Assert.That(result.ConnectStatus, Is.EqualTo(UpstreamConnectStatus.Connected));
        Assert.That(result.Upstream, Is.EqualTo(lab.ServerEndPoint));
        TestContext.Out.WriteLine($"{family}: 2 × 20 MiB in {result.Duration.TotalMilliseconds:F0} ms; client leg at close: {result.ClientMptcp}");
    }

    [Test]
    public async Task Relay_ClientHalfCloses_ServerSeesEofAndItsLaterAnswerStillArrives()
    {
        await using var lab = await RelayLab.StartAsync();
        using var pair = await lab.ConnectPairAsync();

        await TestSockets.SendAsync(pair.Client, "request"u8.ToArray());
        pair.Client.Shutdown(SocketShutdown.Send);
        var request = await TestSockets.ReadToEndAsync(pair.Server);   // returns only at the relayed FIN
        await Task.Delay(200);                                           // the answer comes well after the FIN
        await TestSockets.SendAsync(pair.Server, Encoding.ASCII.GetBytes($"answer to {Encoding.ASCII.GetString(request)}"));
        pair.Server.Shutdown(SocketShutdown.Send);
        var answer = await TestSockets.ReadToEndAsync(pair.Client);
        var result = await lab.NextResultAsync();

        Assert.That(Encoding.ASCII.GetString(request), Is.EqualTo("request"));
        Assert.That(Encoding.ASCII.GetString(answer), Is.EqualTo("answer to request"));
        Assert.That(result.Reason, Is.EqualTo(CloseReason.Completed));
        Assert.That(result.BytesUpstreamToClient, Is.EqualTo("answer to request".Length));
    }

    [Test]
    public async Task Relay_ServerHalfCloses_ClientSeesEofAndCanStillSend()
    {
        await using var lab = await RelayLab.StartAsync();
        using var pair = await lab.ConnectPairAsync();

        await TestSockets.SendAsync(pair.Server, "banner"u8.ToArray());
        pair.Server.Shutdown(SocketShutdown.Send);
        var banner = await TestSockets.ReadToEndAsync(pair.Client);
        await TestSockets.SendAsync(pair.Client, "late"u8.ToArray());
        pair.Client.Shutdown(SocketShutdown.Send);
        var late = await TestSockets.ReadToEndAsync(pair.Server);
        var result = await lab.NextResultAsync();

        Assert.That(banner, Is.EqualTo("banner"u8.ToArray()));
        Assert.That(late, Is.EqualTo("late"u8.ToArray()));
        Assert.That(result.Reason, Is.EqualTo(CloseReason.Completed));
    }

    [Test]
    public async Task Relay_ServerResets_ClientSeesReset()
    {
        await using var lab = await RelayLab.StartAsync();
        using var pair = await lab.ConnectPairAsync();
        await pair.PingAsync();

        TestSockets.Abort(pair.Server);
        var seen = await TestSockets.ReadUntilClosedAsync(pair.Client);
        var result = await lab.NextResultAsync();

        Assert.That(seen, Is.EqualTo(SocketError.ConnectionReset));
        Assert.That(result.Reason, Is.EqualTo(CloseReason.UpstreamReset));
    }

    [Test]
    public async Task Relay_ClientResets_ServerSeesReset()
    {
        await using var lab = await RelayLab.StartAsync();
        using var pair = await lab.ConnectPairAsync();
        await TestSockets.SendAsync(pair.Server, "ping"u8.ToArray());
        await TestSockets.ReadExactlyAsync(pair.Client, 4);

        TestSockets.Abort(pair.Client);
        var seen = await TestSockets.ReadUntilClosedAsync(pair.Server);
        var result = await lab.NextResultAsync();

        Assert.That(seen, Is.EqualTo(SocketError.ConnectionReset));
        Assert.That(result.Reason, Is.EqualTo(CloseReason.ClientReset));
    }

    [Test]
    public async Task Relay_NoTrafficForIdleTimeout_ResetsBothLegs()
    {
        var idle = TimeSpan.FromSeconds(1);
        await using var lab = await RelayLab.StartAsync(new RelayOptions { IdleTimeout = idle });
        using var pair = await lab.ConnectPairAsync();
        await pair.PingAsync();

        var seen = pair.ReadUntilClosedAsync();
        var result = await lab.NextResultAsync();

        Assert.That(result.Reason, Is.EqualTo(CloseReason.IdleTimeout));
        // Timers tick in milliseconds, the duration is measured with the high-resolution clock.
        Assert.That(result.Duration, Is.GreaterThanOrEqualTo(idle - TimeSpan.FromMilliseconds(20)));
        Assert.That(result.ConnectTime, Is.Not.Null.And.LessThan(idle), "the upstream connect's own time, not the connection's lifetime");
        Assert.That(await seen.WaitAsync(Timeout), Is.EqualTo((SocketError.ConnectionReset, SocketError.ConnectionReset)), "(client, server) both reset");
    }

    [Test]
    public async Task Relay_TrafficKeepsComing_IdleTimeoutFiresOnlyAfterTheLastByte()
    {
        // A fake clock: the timeout depends on the relay resetting its one token source, not on scheduling luck.
        var time = new FakeTimeProvider();
        var idle = TimeSpan.FromSeconds(10);
        await using var lab = await RelayLab.StartAsync(new RelayOptions { IdleTimeout = idle }, relayTime: time);
        using var pair = await lab.ConnectPairAsync();
        var connection = await lab.SingleConnectionAsync();

        // Three times the idle timeout in all, never a gap of more than 0.6 of it.
        for (int i = 0; i < 5; i++)
        {
            await TestSockets.SendAsync(pair.Client, "tick"u8.ToArray());
            await TestSockets.ReadExactlyAsync(pair.Server, 4);
            await TestSockets.SendAsync(pair.Server, "tock"u8.ToArray());
            await TestSockets.ReadExactlyAsync(pair.Client, 4);
            time.Advance(idle * 0.6);
        }
        var whileBusy = connection.Reason;
        // The relay pushes the deadline out once more after its last write, which may run after the client has read the
        // bytes: an advance made before it is forgotten (the fake clock then never reaches the new deadline). So advance
        // again until the result comes, a bounded number of times; each advance is a whole idle period without traffic.
        RelayResult? result = null;
        for (int i = 0; i < 5 && result is null; i++)
        {
            time.Advance(idle);
            result = await lab.TryNextResultAsync(TimeSpan.FromSeconds(2));
        }

        Assert.That(result, Is.Not.Null, "the idle timeout fired after the traffic stopped");

        Assert.That(whileBusy, Is.EqualTo(CloseReason.None));
        Assert.That(result!.Reason, Is.EqualTo(CloseReason.IdleTimeout));
        Assert.That(await pair.ReadUntilClosedAsync(), Is.EqualTo((SocketError.ConnectionReset, SocketError.ConnectionReset)), "(client, server) both reset");
    }

    [Test]
    public async Task DisposeAsync_WithALiveConnection_ResetsBothLegsWithReasonAborted()
    {
        await using var lab = await RelayLab.StartAsync();
        using var pair = await lab.ConnectPairAsync();
        await pair.PingAsync();

        await lab.Relay.DisposeAsync().AsTask().WaitAsync(Timeout);
        var result = await lab.NextResultAsync();

        Assert.That(result.Reason, Is.EqualTo(CloseReason.Aborted));
        Assert.That(lab.Relay.Connections, Is.Empty);
        Assert.That(lab.Relay.Limiter.Active, Is.Zero);
        Assert.That(await pair.ReadUntilClosedAsync(), Is.EqualTo((SocketError.ConnectionReset, SocketError.ConnectionReset)), "(client, server) both reset");
        Assert.That(async () => await lab.Listener.Stopped.WaitAsync(Timeout), Throws.Nothing, "the accept loop ends with the listener");
    }

    [Test]
    public async Task Relay_AtConnectionLimit_RefusesTheNextClientWithReset()
    {
        await using var lab = await RelayLab.StartAsync(new RelayOptions { MaxConnections = 1 });
        using var pair = await lab.ConnectPairAsync();
        await TestSockets.SendAsync(pair.Client, "one"u8.ToArray());
        await TestSockets.ReadExactlyAsync(pair.Server, 3);

        var seen = await lab.ConnectRejectedClientAsync();
        var refused = await lab.NextResultAsync();

        Assert.That(seen, Is.EqualTo(SocketError.ConnectionReset));
        Assert.That(refused.Reason, Is.EqualTo(CloseReason.Refused));
        Assert.That(refused.ConnectStatus, Is.EqualTo(UpstreamConnectStatus.NotAttempted));
        Assert.That(lab.Relay.Limiter.Active, Is.EqualTo(1));
        // The first connection is untouched.
        await TestSockets.SendAsync(pair.Client, "two"u8.ToArray());
        Assert.That(await TestSockets.ReadExactlyAsync(pair.Server, 3), Is.EqualTo("two"u8.ToArray()));
    }

    [Test]
    public async Task Relay_UpstreamPortClosed_ClientLegIsResetNotClosed()
    {
        await using var lab = await RelayLab.StartAsync();
        // Nothing listens on the server: its kernel answers the relay's SYN with a RST.
        var seen = await lab.ConnectRejectedClientAsync();
        var result = await lab.NextResultAsync();

        Assert.That(seen, Is.EqualTo(SocketError.ConnectionReset));
        Assert.That(result.Reason, Is.EqualTo(CloseReason.UpstreamConnectFailed));
        Assert.That(result.ConnectStatus, Is.EqualTo(UpstreamConnectStatus.Refused));
        Assert.That(result.Upstream, Is.EqualTo(lab.ServerEndPoint));
    }

    [Test]
    public async Task Relay_UpstreamDropsSyns_ConnectTimesOutAndClientIsReset()
    {
        await using var lab = await RelayLab.StartAsync(connectorOptions: new UpstreamConnectorOptions { ConnectTimeout = TimeSpan.FromMilliseconds(500) });
        await lab.Topology.Server.CheckAsync("iptables", ["-A", "INPUT", "-p", "tcp", "--syn", "--dport", $"{lab.ServerEndPoint.Port}", "-j", "DROP"]).WaitAsync(Timeout);
        var seen = await lab.ConnectRejectedClientAsync();
        var result = await lab.NextResultAsync();

        Assert.That(seen, Is.EqualTo(SocketError.ConnectionReset));
        Assert.That(result.ConnectStatus, Is.EqualTo(UpstreamConnectStatus.TimedOut));
        Assert.That(result.Duration, Is.LessThan(TimeSpan.FromSeconds(5)));
        Assert.That(result.ConnectTime, Is.GreaterThanOrEqualTo(TimeSpan.FromMilliseconds(480)), "the connect waited for its 500 ms timeout");
    }

    [Test]
    public async Task Relay_RepeatedUpstreamFailures_OpenTheDestinationsCircuit()
    {
        await using var lab = await RelayLab.StartAsync(connectorOptions: new UpstreamConnectorOptions
        {
            BreakerMinimumThroughput = 2,
            BreakerFailureRatio = 0.5,
            BreakerBreakDuration = TimeSpan.FromMinutes(1),
        });
        var statuses = new List<UpstreamConnectStatus>();
        for (int i = 0; i < 3; i++)
        {
            Assert.That(await lab.ConnectRejectedClientAsync(), Is.EqualTo(SocketError.ConnectionReset));
            statuses.Add((await lab.NextResultAsync()).ConnectStatus);
        }

        Assert.That(statuses, Is.EqualTo(new[] { UpstreamConnectStatus.Refused, UpstreamConnectStatus.Refused, UpstreamConnectStatus.CircuitOpen }));
    }

    [Test]
    public async Task Abort_CalledTwice_KeepsTheFirstReasonAndResetsBothLegs()
    {
        await using var lab = await RelayLab.StartAsync();
        using var pair = await lab.ConnectPairAsync();
        await pair.PingAsync();
        var connection = await lab.SingleConnectionAsync();

        connection.Abort(CloseReason.Aborted);
        connection.Abort(CloseReason.IdleTimeout);
        var result = await lab.NextResultAsync();

        Assert.That(connection.Reason, Is.EqualTo(CloseReason.Aborted));
        Assert.That(result.Reason, Is.EqualTo(CloseReason.Aborted));
        Assert.That(await pair.ReadUntilClosedAsync(), Is.EqualTo((SocketError.ConnectionReset, SocketError.ConnectionReset)), "(client, server) both reset");
    }

    [Test]
    public async Task Abort_FromManyThreadsAtOnce_ExactlyOneReasonWinsAndTheResultCarriesIt()
    {
        await using var lab = await RelayLab.StartAsync();
        using var pair = await lab.ConnectPairAsync();
        await pair.PingAsync();
        var connection = await lab.SingleConnectionAsync();

        CloseReason[] reasons = [CloseReason.Aborted, CloseReason.IdleTimeout, CloseReason.Error, CloseReason.ClientReset];
        using var start = new Barrier(reasons.Length);
        var aborts = reasons.Select(reason => Task.Run(() =>
        {
            start.SignalAndWait(Timeout);
            connection.Abort(reason);
        })).ToArray();
        await Task.WhenAll(aborts).WaitAsync(Timeout);
        var result = await lab.NextResultAsync();

        Assert.That(reasons, Does.Contain(connection.Reason));
        Assert.That(result.Reason, Is.EqualTo(connection.Reason));
        Assert.That(await pair.ReadUntilClosedAsync(), Is.EqualTo((SocketError.ConnectionReset, SocketError.ConnectionReset)), "(client, server) both reset");
    }

    [Test]
    public async Task Relay_UpstreamMappingThrows_ClientIsResetAndTheListenerKeepsAccepting()
    {
        await using var lab = await RelayLab.StartAsync();
        var results = System.Threading.Channels.Channel.CreateUnbounded<RelayResult>();
        int calls = 0;
        await using var relay = new RelayServer(
            new RelayOptions(),
            new ListenerOptions(),
            lab.Sockets,
            lab.Connector,
            TimeProvider.System,
            result => results.Writer.TryWrite(result),
            _ => Interlocked.Increment(ref calls) == 1 ? throw new InvalidOperationException("mapping bug") : lab.ServerEndPoint);
        var port = relay.EnsureListener(0, AddressFamily.InterNetwork).LocalEndPoint.Port;
        var relayEndPoint = new IPEndPoint(IPAddress.Parse(TwoPathTopology.ProxyPath1V4), port);
        using var serverListener = await lab.ListenOnServerAsync();
        using var cts = new CancellationTokenSource(Timeout);

        async Task<Socket> ConnectAsync()
        {
            var socket = await lab.Topology.Client.RunInNamespaceAsync(() => SocketFactory.Default.Create(AddressFamily.InterNetwork, TransportProtocol.Mptcp)).WaitAsync(Timeout);
            await socket.ConnectAsync(relayEndPoint, cts.Token);
            return socket;
        }

        SocketError firstSeen;
        try
        {
            using var first = await ConnectAsync();
            firstSeen = await TestSockets.ReadUntilClosedAsync(first);
        }
        catch (SocketException e)
        {
            firstSeen = e.SocketErrorCode; // the reset beat connect() back
        }
        var firstResult = await results.Reader.ReadAsync(cts.Token);
        using var second = await ConnectAsync();
        using var server = await TestSockets.AcceptAsync(serverListener);
        await TestSockets.SendAsync(second, "ok"u8.ToArray());

        Assert.That(firstSeen, Is.EqualTo(SocketError.ConnectionReset));
        Assert.That(firstResult.Reason, Is.EqualTo(CloseReason.Error));
        Assert.That(firstResult.ConnectStatus, Is.EqualTo(UpstreamConnectStatus.NotAttempted));
        Assert.That(await TestSockets.ReadExactlyAsync(server, 2), Is.EqualTo("ok"u8.ToArray()));
        Assert.That(relay.Limiter.Active, Is.EqualTo(1), "the failed connection gave its slot back");
    }

    [Test]
    public async Task Relay_UpgradeRole_TcpClientGetsMptcpUpstream()
    {
        await using var lab = await RelayLab.StartAsync(new RelayOptions
        {
            ClientProtocol = TransportProtocol.Tcp,
            UpstreamProtocol = TransportProtocol.Mptcp,
        });
        using var pair = await lab.ConnectPairAsync(TransportProtocol.Tcp, TransportProtocol.Mptcp);
        await TestSockets.SendAsync(pair.Client, "up"u8.ToArray());
        await TestSockets.ReadExactlyAsync(pair.Server, 2);
        var connection = await lab.SingleConnectionAsync();

        Assert.That(connection.UpstreamMptcp().Status, Is.EqualTo(MptcpStatus.Active));
        Assert.That(connection.ClientMptcp().Status, Is.EqualTo(MptcpStatus.NotMptcp));
        Assert.That(MptcpSocket.TryGetInfo(pair.Server, out _), Is.EqualTo(MptcpStatus.Active));
        pair.Client.Shutdown(SocketShutdown.Send);
        pair.Server.Shutdown(SocketShutdown.Send);
        var result = await lab.NextResultAsync();
        Assert.That(result.Reason, Is.EqualTo(CloseReason.Completed));
        Assert.That(result.UpstreamMptcp.Status, Is.EqualTo(MptcpStatus.Active));
        Assert.That(result.ClientMaxSubflows, Is.Zero, "a TCP client leg has no subflows");
        Assert.That(result.UpstreamMaxSubflows, Is.GreaterThanOrEqualTo(1), "the MPTCP leg's subflows are counted on the upstream side");
    }

    [Test]
    public async Task Relay_PlainTcpClientOnMptcpListener_RelaysAsFallback()
    {
        await using var lab = await RelayLab.StartAsync();
        using var pair = await lab.ConnectPairAsync(TransportProtocol.Tcp);
        await TestSockets.SendAsync(pair.Client, "legacy"u8.ToArray());
        pair.Client.Shutdown(SocketShutdown.Send);
        Assert.That(await TestSockets.ReadToEndAsync(pair.Server), Is.EqualTo("legacy"u8.ToArray()));
        pair.Server.Shutdown(SocketShutdown.Send);
        var result = await lab.NextResultAsync();

        Assert.That(result.Reason, Is.EqualTo(CloseReason.Completed));
        // A plain SYN on an MPTCP listener: accept(2) hands out the TCP subflow itself, SO_PROTOCOL says TCP.
        Assert.That(result.ClientMptcp.Status, Is.EqualTo(MptcpStatus.NotMptcp));
    }

    [Test]
    public async Task Relay_IdleConnection_HoldsNoBuffer()
    {
        var pool = new CountingMemoryPool();
        await using var lab = await RelayLab.StartAsync(new RelayOptions { MemoryPool = pool });
        using var pair = await lab.ConnectPairAsync();
        for (int i = 0; i < 10; i++)
        {
            await TestSockets.SendAsync(pair.Client, new byte[100_000]);
            await TestSockets.ReadExactlyAsync(pair.Server, 100_000);
            await TestSockets.SendAsync(pair.Server, new byte[100_000]);
            await TestSockets.ReadExactlyAsync(pair.Client, 100_000);

            // Both loops are parked on zero-byte reads now; the last segments go back once the relay's last sends
            // return. Checked after every exchange: stale readiness wakeups (measured: a few per exchange under
            // load) land at different points each time.
            var deadline = DateTime.UtcNow + Timeout;
            while (pool.Outstanding > 0 && DateTime.UtcNow < deadline)
            {
                await Task.Delay(10);
            }
            Assert.That(pool.Outstanding, Is.Zero, $"segments still rented after exchange {i + 1}");
        }

        Assert.That(pool.PeakBytes, Is.GreaterThan(0), "the relay used the pool");
        Assert.That((await lab.SingleConnectionAsync()).Reason, Is.EqualTo(CloseReason.None), "still open");
    }

    [Test]
    public async Task Relay_ServerStopsReading_BufferStaysBoundedAndAllDataArrivesLater()
    {
        var pool = new CountingMemoryPool();
        var options = new RelayOptions { MemoryPool = pool, PauseThreshold = 256 * 1024, ResumeThreshold = 128 * 1024 };
        await using var lab = await RelayLab.StartAsync(options);
        using var pair = await lab.ConnectPairAsync();

        // Send until the client's own send stalls: the server's receive buffer, the relay's pipe (paused) and
        // the socket buffers in between are full. Bounded: at most 64 MiB.
        var chunk = new byte[64 * 1024];
        long sent = 0;
        Task<int>? stalled = null;
        for (int i = 0; i < 1024; i++)
        {
            var send = pair.Client.SendAsync(chunk.AsMemory(), SocketFlags.None).AsTask();
            if (await Task.WhenAny(send, Task.Delay(500)) != send)
            {
                stalled = send;
                break;
            }
            sent += await send;
        }
        var peak = pool.PeakBytes;
        Assert.That(stalled, Is.Not.Null, "the send never stalled: the relay does not push back");

        var receive = TestSockets.ReceiveHashAsync(pair.Server);
        sent += await stalled!.WaitAsync(Timeout);
        pair.Client.Shutdown(SocketShutdown.Send);
        var (received, _) = await receive.WaitAsync(Timeout);

        // Unconsumed bytes stop at the pause threshold plus one read; every segment but the first (partly consumed)
        // and the last (being written) holds at least a read's worth, whatever the sizes of the reads.
        long bound = (2 * (options.PauseThreshold + options.ReadSize)) + (2 * options.SegmentSize);
        Assert.That(peak, Is.LessThanOrEqualTo(bound), $"peak pool use {peak}");
        Assert.That(received, Is.EqualTo(sent));
        TestContext.Out.WriteLine($"stalled after {sent} bytes; relay peak buffer {peak} bytes");
    }

    [TestCase(AddressFamily.InterNetwork, false)]
    [TestCase(AddressFamily.InterNetwork, true)]
    [TestCase(AddressFamily.InterNetworkV6, false)]
    [TestCase(AddressFamily.InterNetworkV6, true)]
    public async Task Relay_UnderTproxy_InterceptsBothSubflowsOnTheOriginalPortAndReachesTheOriginalDestination(
        AddressFamily family, bool transparentSource)
    {
        await using var lab = await RelayLab.StartAsync(new RelayOptions { TransparentSource = transparentSource }, family: family, intercept: true);
        using var pair = await lab.ConnectPairAsync();
        await TestSockets.SendAsync(pair.Client, new byte[1000]);
        await TestSockets.ReadExactlyAsync(pair.Server, 1000);
        var connection = await lab.SingleConnectionAsync();
        var live = await WaitForClientSubflowsAsync(connection, 2);

        var serverReceives = TestSockets.ReceiveHashAsync(pair.Server);
        var sent = await TestSockets.SendRandomAsync(pair.Client, 4 * 1024 * 1024, seed: 3);
        pair.Client.Shutdown(SocketShutdown.Send);
        var (_, received) = await serverReceives.WaitAsync(Timeout);
        pair.Server.Shutdown(SocketShutdown.Send);
        var result = await lab.NextResultAsync();

        bool v6 = family == AddressFamily.InterNetworkV6;
        var clientAddress = IPAddress.Parse(v6 ? TwoPathTopology.ClientPath1V6 : TwoPathTopology.ClientPath1V4);
        var proxyAddress = IPAddress.Parse(v6 ? TwoPathTopology.ProxyUpV6 : TwoPathTopology.ProxyUpV4);
        Assert.That(result.OriginalDestination, Is.EqualTo(lab.ServerEndPoint), "accepted socket's local endpoint is the original destination");
        Assert.That(((IPEndPoint)pair.Server.RemoteEndPoint!).Address, Is.EqualTo(transparentSource ? clientAddress : proxyAddress));
        Assert.That(live.Info.Subflows, Is.EqualTo(2), live.ToString());
        Assert.That(live.Subflows.Select(s => s.Local.Port), Has.All.EqualTo(lab.ServerEndPoint.Port), "MP_JOIN kept the port");
        Assert.That(live.Subflows.Select(s => s.Local.Address), Has.All.EqualTo(lab.ServerEndPoint.Address));
        Assert.That(received, Is.EqualTo(sent));
        Assert.That(result.Reason, Is.EqualTo(CloseReason.Completed));
    }

    internal static async Task<MptcpSnapshot> WaitForClientSubflowsAsync(RelayConnection connection, int count)
    {
        // The socket list shows a joined subflow a moment before mptcp_info counts it (the join's last ACK is still
        // being processed): wait for both, or a snapshot taken in between reads 2 subflows listed and 1 counted.
        var deadline = DateTime.UtcNow + Timeout;
        var snapshot = connection.ClientMptcp();
        while ((snapshot.Subflows.Length < count || snapshot.Info.Subflows < count) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
            snapshot = connection.ClientMptcp();
        }
        return snapshot;
    }
}
