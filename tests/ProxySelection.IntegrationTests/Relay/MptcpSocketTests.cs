using System.Net;
using System.Net.Sockets;
using ProxySelection.Lab;
using ProxySelection.Relay;

namespace ProxySelection.IntegrationTests.Relay;

[TestFixture]
public sealed class MptcpSocketTests
{
    private static readonly TimeSpan Timeout = RelayLab.Timeout;

    private static async Task<(Socket Listener, IPEndPoint EndPoint)> ListenAsync(NetNamespace ns, string address, TransportProtocol protocol)
    {
        var listener = await ns.RunInNamespaceAsync(() =>
        {
            var l = SocketFactory.Default.Create(AddressFamily.InterNetwork, protocol);
            l.Bind(new IPEndPoint(IPAddress.Parse(address), 0));
            l.Listen();
            return l;
        });
        return (listener, (IPEndPoint)listener.LocalEndPoint!);
    }

    [Test]
    public async Task MptcpSocket_AcceptConnectAndZeroByteReceive_WorkAsynchronously()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var t = await TwoPathTopology.BuildAsync(lab).WaitAsync(Timeout);
        var (listener, endPoint) = await ListenAsync(t.Server, TwoPathTopology.ServerV4, TransportProtocol.Mptcp);
        using var listening = listener;
        using var client = await t.Client.RunInNamespaceAsync(() => SocketFactory.CreateMptcp(AddressFamily.InterNetwork));

        Assert.That(MptcpSocket.IsMptcp(client), Is.True);
        using var cts = new CancellationTokenSource(Timeout);
        var accept = listener.AcceptAsync(cts.Token).AsTask();
        Assert.That(accept.IsCompleted, Is.False, "nothing connected yet");
        await client.ConnectAsync(endPoint, cts.Token);
        using var accepted = await accept.WaitAsync(Timeout);

        // A zero-byte receive parks until data arrives, without a buffer.
        var park = accepted.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, cts.Token).AsTask();
        await Task.Delay(100);
        Assert.That(park.IsCompleted, Is.False, "zero-byte receive completed with no data");
        await TestSockets.SendAsync(client, "hello"u8.ToArray());
        Assert.That(await park.WaitAsync(Timeout), Is.Zero);
        Assert.That(await TestSockets.ReadExactlyAsync(accepted, 5), Is.EqualTo("hello"u8.ToArray()));

        // The peer's FIN: zero-byte receive returns, then a real receive returns 0.
        client.Shutdown(SocketShutdown.Send);
        Assert.That(await accepted.ReceiveAsync(Memory<byte>.Empty, SocketFlags.None, cts.Token).AsTask().WaitAsync(Timeout), Is.Zero);
        Assert.That(await accepted.ReceiveAsync(new byte[16], SocketFlags.None, cts.Token).AsTask().WaitAsync(Timeout), Is.Zero);

        Assert.That(MptcpSocket.TryGetInfo(accepted, out var serverInfo), Is.EqualTo(MptcpStatus.Active));
        Assert.That(MptcpSocket.TryGetInfo(client, out var clientInfo), Is.EqualTo(MptcpStatus.Active));
        Assert.That(serverInfo.Subflows, Is.GreaterThanOrEqualTo(1));
        Assert.That(serverInfo.RemoteKeyReceived, Is.True);
        Assert.That(clientInfo.Token, Is.Not.EqualTo(serverInfo.Token), "each side has its own token");
        Assert.That(serverInfo.BytesReceived, Is.EqualTo(5));
    }

    [Test]
    public async Task MptcpInfo_ClientToTcpOnlyServer_ReportsFallBackToTcp()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var t = await TwoPathTopology.BuildAsync(lab).WaitAsync(Timeout);
        var (listener, endPoint) = await ListenAsync(t.Server, TwoPathTopology.ServerV4, TransportProtocol.Tcp);
        using var listening = listener;
        using var client = await t.Client.RunInNamespaceAsync(() => SocketFactory.CreateMptcp(AddressFamily.InterNetwork));
        using var cts = new CancellationTokenSource(Timeout);
        var accept = listener.AcceptAsync(cts.Token).AsTask();
        await client.ConnectAsync(endPoint, cts.Token);
        using var accepted = await accept.WaitAsync(Timeout);
        await TestSockets.SendAsync(client, "x"u8.ToArray());
        await TestSockets.ReadExactlyAsync(accepted, 1);

        Assert.That(MptcpSocket.TryGetInfo(client, out _), Is.EqualTo(MptcpStatus.FellBackToTcp));
        Assert.That(MptcpSocket.Snapshot(client).Status, Is.EqualTo(MptcpStatus.FellBackToTcp));
        Assert.That(MptcpSocket.Snapshot(accepted), Is.SameAs(MptcpSnapshot.NotMptcp));
    }

    [Test]
    public async Task MptcpSubflows_TwoPathClient_ListsBothSubflowsWithTheirAddresses()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var t = await TwoPathTopology.BuildAsync(lab).WaitAsync(Timeout);
        var (listener, endPoint) = await ListenAsync(t.Proxy, TwoPathTopology.ProxyPath1V4, TransportProtocol.Mptcp);
        using var listening = listener;
        using var client = await t.Client.RunInNamespaceAsync(() => SocketFactory.CreateMptcp(AddressFamily.InterNetwork));
        using var cts = new CancellationTokenSource(Timeout);
        var accept = listener.AcceptAsync(cts.Token).AsTask();
        await client.ConnectAsync(endPoint, cts.Token);
        using var accepted = await accept.WaitAsync(Timeout);
        await TestSockets.SendAsync(client, new byte[1000]);
        await TestSockets.ReadExactlyAsync(accepted, 1000);

        var snapshot = await WaitForSubflowsAsync(accepted, 2);

        Assert.That(snapshot.Status, Is.EqualTo(MptcpStatus.Active));
        Assert.That(snapshot.Info.Subflows, Is.EqualTo(2));
        Assert.That(snapshot.Subflows.Select(s => s.Remote.Address.ToString()),
            Is.EquivalentTo(new[] { TwoPathTopology.ClientPath1V4, TwoPathTopology.ClientPath2V4 }));
        Assert.That(snapshot.Subflows.Select(s => s.Local.Address.ToString()), Has.All.EqualTo(TwoPathTopology.ProxyPath1V4));
        Assert.That(snapshot.Subflows.Select(s => s.Local.Port), Has.All.EqualTo(endPoint.Port));
        // TCP_ESTABLISHED = 1, and the subflow's RTT was measured.
        Assert.That(snapshot.Subflows.Select(s => s.TcpState), Has.All.EqualTo(1));
        Assert.That(snapshot.Subflows.Select(s => s.RttMicroseconds), Has.All.GreaterThan(0));
    }

    /// <summary>The MP_JOIN comes after the first data ack; poll the kernel, bounded.</summary>
    internal static async Task<MptcpSnapshot> WaitForSubflowsAsync(Socket socket, int count)
    {
        var deadline = DateTime.UtcNow + Timeout;
        var snapshot = MptcpSocket.Snapshot(socket);
        while (snapshot.Subflows.Length < count && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
            snapshot = MptcpSocket.Snapshot(socket);
        }
        return snapshot;
    }
}
