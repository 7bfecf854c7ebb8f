using System.Net.Sockets;
using System.Text;
using ProxySelection.Relay;

namespace ProxySelection.IntegrationTests.Relay;

/// <summary>
/// The zero-copy path (<see cref="RelayOptions.Splice"/>) on the real kernel: the same guarantees as the copy path —
/// bytes intact both ways, MPTCP client legs included (splice on an MPTCP socket, Linux 6.18), FIN passed after the
/// last byte, resets passed on, a slow reader stopping reads without loss.
/// </summary>
[TestFixture]
public sealed class SpliceRelayTests
{
    private const long TwentyMegabytes = 20L * 1024 * 1024;
    private static readonly TimeSpan Timeout = RelayLab.Timeout;

    [TestCase(TransportProtocol.Mptcp)]
    [TestCase(TransportProtocol.Tcp)]
    public async Task Splice_ClientToTcpServer_Relays20MBEachWayIntact(TransportProtocol clientProtocol)
    {
        await using var lab = await RelayLab.StartAsync(new RelayOptions { Splice = true, ClientProtocol = clientProtocol });
        using var pair = await lab.ConnectPairAsync(clientProtocol);
        var connection = await lab.SingleConnectionAsync();
        await TestSockets.SendAsync(pair.Client, new byte[1000]);
        await TestSockets.ReadExactlyAsync(pair.Server, 1000);
        var live = clientProtocol == TransportProtocol.Mptcp ? await RelayTests.WaitForClientSubflowsAsync(connection, 2) : MptcpSnapshot.NotMptcp;

        var both = await TestSockets.SendBothWaysAsync(pair.Client, pair.Server, TwentyMegabytes, clientSeed: 11, serverSeed: 12);
        var result = await lab.NextResultAsync().WaitAsync(Timeout);

        Assert.Multiple(() =>
        {
            Assert.That((both.ReceivedUpBytes, both.ReceivedUp), Is.EqualTo((TwentyMegabytes, both.SentUp)), "client → server bytes and SHA-256");
            Assert.That((both.ReceivedDownBytes, both.ReceivedDown), Is.EqualTo((TwentyMegabytes, both.SentDown)), "server → client bytes and SHA-256");
            Assert.That(result.Reason, Is.EqualTo(CloseReason.Completed));
            Assert.That(result.BytesClientToUpstream, Is.EqualTo(TwentyMegabytes + 1000));
            Assert.That(result.BytesUpstreamToClient, Is.EqualTo(TwentyMegabytes));
            if (clientProtocol == TransportProtocol.Mptcp)
            {
                Assert.That(live.Info.Subflows, Is.EqualTo(2), live.ToString());
                Assert.That(result.ClientMptcp.Status, Is.EqualTo(MptcpStatus.Active));
            }
        });
        await TestContext.Out.WriteLineAsync($"splice {clientProtocol}: 2 × 20 MiB in {result.Duration.TotalMilliseconds:F0} ms");
    }

    [Test]
    public async Task Splice_ClientHalfCloses_ServerSeesEofAndItsLaterAnswerStillArrives()
    {
        await using var lab = await RelayLab.StartAsync(new RelayOptions { Splice = true });
        using var pair = await lab.ConnectPairAsync();

        await TestSockets.SendAsync(pair.Client, "request"u8.ToArray());
        pair.Client.Shutdown(SocketShutdown.Send);
        var request = await TestSockets.ReadToEndAsync(pair.Server).WaitAsync(Timeout);
        await TestSockets.SendAsync(pair.Server, "answer"u8.ToArray());
        pair.Server.Shutdown(SocketShutdown.Send);
        var answer = await TestSockets.ReadToEndAsync(pair.Client).WaitAsync(Timeout);
        var result = await lab.NextResultAsync().WaitAsync(Timeout);

        Assert.That((Encoding.ASCII.GetString(request), Encoding.ASCII.GetString(answer), result.Reason),
            Is.EqualTo(("request", "answer", CloseReason.Completed)));
    }

    [Test]
    public async Task Splice_ServerResets_ClientSeesReset()
    {
        await using var lab = await RelayLab.StartAsync(new RelayOptions { Splice = true });
        using var pair = await lab.ConnectPairAsync();
        await pair.PingAsync();

        TestSockets.Abort(pair.Server);
        var seen = await TestSockets.ReadUntilClosedAsync(pair.Client).WaitAsync(Timeout);
        var result = await lab.NextResultAsync().WaitAsync(Timeout);

        Assert.That((seen, result.Reason), Is.EqualTo((SocketError.ConnectionReset, CloseReason.UpstreamReset)));
    }

    [Test]
    public async Task Splice_ServerReadsLate_EveryByteArrivesInOrder()
    {
        await using var lab = await RelayLab.StartAsync(new RelayOptions { Splice = true, ClientProtocol = TransportProtocol.Tcp });
        using var pair = await lab.ConnectPairAsync(TransportProtocol.Tcp);

        // More than the socket buffers and the pipe hold: the relay's send side fills and it must wait for room.
        var sending = Task.Run(async () =>
        {
            var hash = await TestSockets.SendRandomAsync(pair.Client, 16L * 1024 * 1024, seed: 13);
            pair.Client.Shutdown(SocketShutdown.Send);
            return hash;
        });
        var connection = await lab.SingleConnectionAsync();
        var deadline = DateTime.UtcNow + Timeout;
        long before;
        do
        {
            before = connection.BytesClientToUpstream;
            await Task.Delay(300);
        }
        while (connection.BytesClientToUpstream != before && DateTime.UtcNow < deadline);
        var (bytes, received) = await TestSockets.ReceiveHashAsync(pair.Server).WaitAsync(TimeSpan.FromSeconds(60));
        var sent = await sending.WaitAsync(Timeout);

        Assert.That(before, Is.LessThan(16L * 1024 * 1024), "reads stopped while the server did not read");
        Assert.That((bytes, received), Is.EqualTo((16L * 1024 * 1024, sent)));
    }
}
