using System.Net;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Lab;

[TestFixture]
public sealed class LabServicesTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [TestCase(false, false)]
    [TestCase(false, true)]
    [TestCase(true, true)]
    public async Task Nginx_CurlFromClient_DownloadsTheFileIntact(bool v6, bool mptcp)
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var t = await TwoPathTopology.BuildAsync(lab).WaitAsync(Timeout);
        var server = IPAddress.Parse(TwoPathTopology.ServerAddress(v6));
        await using var nginx = await NginxServer.StartAsync(t.Server, 8081, server, mptcp).WaitAsync(Timeout);
        var sha = LabNetwork.CreateRandomFile(Path.Combine(nginx.WebRoot, "blob"), 2 << 20);
        var output = Path.Combine(nginx.Directory, "downloaded");
        var url = v6 ? $"http://[{server}]:8081/blob" : $"http://{server}:8081/blob";

        var result = await LabNetwork.CurlAsync(t.Client, url, output, mptcp, TimeSpan.FromSeconds(20)).WaitAsync(Timeout);
        var counters = await LabNetwork.ReadCountersAsync(t.Client, "MPTcpExtMPCapableSYNACKRX", "MPTcpExtMPJoinSynAckRx").WaitAsync(Timeout);

        Assert.That(result.HttpStatus, Is.EqualTo(200), result.StdErr + nginx.ErrorLog);
        Assert.That(result.BytesDownloaded, Is.EqualTo(2 << 20));
        Assert.That(LabNetwork.Sha256OfFile(output), Is.EqualTo(sha));
        // Both ends under mptcpize: MPTCP end to end, and the client's path2 endpoint adds a subflow.
        Assert.That(counters["MPTcpExtMPCapableSYNACKRX"], Is.EqualTo(mptcp ? 1 : 0));
        if (mptcp)
        {
            await LabTests.WaitUntilAsync(
                () => LabNetwork.ReadCountersAsync(t.Client, "MPTcpExtMPJoinSynAckRx").GetAwaiter().GetResult()["MPTcpExtMPJoinSynAckRx"] >= 1,
                Timeout);
        }
    }

    [Test]
    public async Task Iperf3_OneSecondOverRateLimitedPath_MeasuresNearTheLimit()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var t = await TwoPathTopology.BuildAsync(lab).WaitAsync(Timeout);
        await t.Client.SetRateLimitAsync(TwoPathTopology.ClientPath1, "20mbit").WaitAsync(Timeout);
        await using var server = await LabNetwork.StartIperf3ServerAsync(t.Server, 5201).WaitAsync(Timeout);

        var result = await LabNetwork.Iperf3Async(t.Client, IPAddress.Parse(TwoPathTopology.ServerV4), 5201, seconds: 1).WaitAsync(Timeout);

        Assert.That(result.Bytes, Is.GreaterThan(0));
        Assert.That(result.BitsPerSecond, Is.LessThan(20e6 * 1.2), "HTB caps the sender at 20 Mbit/s");
        Assert.That(result.BitsPerSecond, Is.GreaterThan(20e6 * 0.3));
    }
}
