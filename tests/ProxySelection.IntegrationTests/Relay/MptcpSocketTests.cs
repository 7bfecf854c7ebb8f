using System.Buffers.Binary;
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
        }).WaitAsync(Timeout);
        return (listener, (IPEndPoint)listener.LocalEndPoint!);
    }

    [Test]
    public async Task MptcpSocket_AcceptConnectAndZeroByteReceive_WorkAsynchronously()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var t = await TwoPathTopology.BuildAsync(lab).WaitAsync(Timeout);
        var (listener, endPoint) = await ListenAsync(t.Server, TwoPathTopology.ServerV4, TransportProtocol.Mptcp);
        using var listening = listener;
        using var client = await t.Client.RunInNamespaceAsync(() => SocketFactory.CreateMptcp(AddressFamily.InterNetwork)).WaitAsync(Timeout);

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
        Assert.That(clientInfo.BytesSent, Is.EqualTo(5));
        Assert.That(serverInfo.Length, Is.EqualTo(MptcpInfo.Size), "this kernel fills the whole struct");
        // The client's second path may have joined by now: the two counts at offsets 0 and 80 must agree.
        Assert.That(serverInfo.SubflowsTotal, Is.EqualTo(serverInfo.AdditionalSubflows + 1));
    }

    [Test]
    public async Task MptcpInfo_ClientToTcpOnlyServer_ReportsFallBackToTcp()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var t = await TwoPathTopology.BuildAsync(lab).WaitAsync(Timeout);
        var (listener, endPoint) = await ListenAsync(t.Server, TwoPathTopology.ServerV4, TransportProtocol.Tcp);
        using var listening = listener;
        using var client = await t.Client.RunInNamespaceAsync(() => SocketFactory.CreateMptcp(AddressFamily.InterNetwork)).WaitAsync(Timeout);
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
        using var client = await t.Client.RunInNamespaceAsync(() => SocketFactory.CreateMptcp(AddressFamily.InterNetwork)).WaitAsync(Timeout);
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

    [Test]
    public void MptcpInfo_TryParse_ReadsEachFieldAtItsOffsetInStructMptcpInfo()
    {
        // include/uapi/linux/mptcp.h as of 6.18: a 2-byte hole after the u8 limits, a 1-byte hole after
        // mptcpi_csum_enabled, 3 reserved bytes after mptcpi_subflows_total; 96 bytes in all.
        var raw = new byte[MptcpInfo.Size];
        byte[] small = [1, 2, 3, 4, 5, 6];
        small.CopyTo(raw, 0);
        BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(8), MptcpInfo.FlagRemoteKeyReceived);
        BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(12), 0xA1B2C3D4);
        BinaryPrimitives.WriteUInt64LittleEndian(raw.AsSpan(16), 16);
        BinaryPrimitives.WriteUInt64LittleEndian(raw.AsSpan(24), 24);
        BinaryPrimitives.WriteUInt64LittleEndian(raw.AsSpan(32), 32);
        raw[40] = 40;
        raw[41] = 41;
        raw[42] = 1;
        BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(44), 44);
        BinaryPrimitives.WriteUInt64LittleEndian(raw.AsSpan(48), 48);
        BinaryPrimitives.WriteUInt64LittleEndian(raw.AsSpan(56), 56);
        BinaryPrimitives.WriteUInt64LittleEndian(raw.AsSpan(64), 64);
        BinaryPrimitives.WriteUInt64LittleEndian(raw.AsSpan(72), 72);
        raw[80] = 3;
        BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(84), 84);
        BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(88), 88);
        BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(92), 92);

        Assert.That(MptcpInfo.TryParse(raw, out var info), Is.True);

        Assert.That(new[] { info.AdditionalSubflows, info.AddAddrSignal, info.AddAddrAccepted, info.SubflowsMax, info.AddAddrSignalMax, info.AddAddrAcceptedMax },
            Is.EqualTo(small));
        Assert.That(info.RemoteKeyReceived, Is.True);
        Assert.That(info.FellBack, Is.False);
        Assert.That(info.Token, Is.EqualTo(0xA1B2C3D4));
        Assert.That(new[] { info.WriteSeq, info.SndUna, info.RcvNxt }, Is.EqualTo(new ulong[] { 16, 24, 32 }));
        Assert.That(new[] { info.LocalAddrUsed, info.LocalAddrMax }, Is.EqualTo(new byte[] { 40, 41 }));
        Assert.That(info.ChecksumEnabled, Is.True);
        Assert.That(info.Retransmits, Is.EqualTo(44));
        Assert.That(new[] { info.BytesRetransmitted, info.BytesSent, info.BytesReceived, info.BytesAcked }, Is.EqualTo(new ulong[] { 48, 56, 64, 72 }));
        Assert.That(info.SubflowsTotal, Is.EqualTo(3));
        Assert.That(info.Subflows, Is.EqualTo(3), "mptcpi_subflows_total where the kernel has it");
        Assert.That(new[] { info.LastDataSentMs, info.LastDataReceivedMs, info.LastAckReceivedMs }, Is.EqualTo(new uint[] { 84, 88, 92 }));
        Assert.That(info.Length, Is.EqualTo(96));
    }

    [Test]
    public void MptcpInfo_TryParse_FirstKernelsShorterStruct_ZeroesLaterFieldsAndCountsTheInitialSubflow()
    {
        var raw = new byte[MptcpInfo.MinimumSize];
        raw[0] = 1; // one additional subflow
        BinaryPrimitives.WriteUInt64LittleEndian(raw.AsSpan(32), 7);

        Assert.That(MptcpInfo.TryParse(raw, out var info), Is.True);

        Assert.That(info.Length, Is.EqualTo(MptcpInfo.MinimumSize));
        Assert.That(info.RcvNxt, Is.EqualTo(7));
        Assert.That(info.BytesSent, Is.Zero);
        Assert.That(info.Subflows, Is.EqualTo(2));
    }

    [Test]
    public void MptcpInfo_TryParse_ShorterThanAnyKernelsStruct_Fails()
    {
        Assert.That(MptcpInfo.TryParse(new byte[MptcpInfo.MinimumSize - 1], out var info), Is.False);
        Assert.That(info, Is.EqualTo(default(MptcpInfo)));
    }

    /// <summary>The MP_JOIN comes after the first data ack; poll the kernel, bounded.</summary>
    internal static async Task<MptcpSnapshot> WaitForSubflowsAsync(Socket socket, int count)
    {
        var deadline = DateTime.UtcNow + Timeout;
        var snapshot = MptcpSocket.Snapshot(socket);
        // The subflow list (MPTCP_SUBFLOW_ADDRS) can show a join before MPTCP_INFO counts it: wait for both.
        while ((snapshot.Subflows.Length < count || snapshot.Info.Subflows < count) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
            snapshot = MptcpSocket.Snapshot(socket);
        }
        return snapshot;
    }
}
