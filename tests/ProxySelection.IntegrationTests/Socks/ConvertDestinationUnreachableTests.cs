using System.Net;
using ProxySelection.Engine.Fronts;
using ProxySelection.IntegrationTests.Proxy;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Socks;

/// <summary>
/// RFC 8803's Destination Unreachable on the real kernel: the server's namespace rejects the converter's SYN with a
/// known ICMP (ICMPv6) code, the converter reads it from the connect socket's error queue (IP_RECVERR / IPV6_RECVERR)
/// and the Convert client reads it in the Error TLV's value.
/// </summary>
public sealed partial class ConvertTests
{
    [Test]
    public async Task Convert_ServerRejectsWithIcmp_DestinationUnreachableCarriesTheIcmpCode()
    {
        await using var lab = await ProxyLab.StartAsync();
        await lab.StartNginxAsync();
        var server = lab.Topology.Server;
        // Port 82: host prohibited (ICMP 3/10, ICMPv6 1/1); port 83: port unreachable (ICMP 3/3, ICMPv6 1/4).
        await server.CheckAsync("iptables", ["-A", "INPUT", "-p", "tcp", "--dport", "82", "-j", "REJECT", "--reject-with", "icmp-host-prohibited"], ProxyLab.Timeout);
        await server.CheckAsync("iptables", ["-A", "INPUT", "-p", "tcp", "--dport", "83", "-j", "REJECT", "--reject-with", "icmp-port-unreachable"], ProxyLab.Timeout);
        await server.CheckAsync("ip6tables", ["-A", "INPUT", "-p", "tcp", "--dport", "82", "-j", "REJECT", "--reject-with", "icmp6-adm-prohibited"], ProxyLab.Timeout);
        await server.CheckAsync("ip6tables", ["-A", "INPUT", "-p", "tcp", "--dport", "83", "-j", "REJECT", "--reject-with", "icmp6-port-unreachable"], ProxyLab.Timeout);
        // No route at the converter itself: no ICMP was received, the converter's Network Failure.
        await lab.Topology.Proxy.IpAsync("route", "add", "unreachable", "198.18.77.0/24");
        var proxy = await StartConvertProxyAsync(lab);

        var v4 = IPAddress.Parse(TwoPathTopology.ServerV4);
        var v6 = IPAddress.Parse(TwoPathTopology.ServerV6);
        var hostProhibited = await ExchangeAsync(lab, ConvertHandshake.ConnectMessage(new IPEndPoint(v4, 82)));
        var portUnreachable = await ExchangeAsync(lab, ConvertHandshake.ConnectMessage(new IPEndPoint(v4, 83)));
        var adminProhibited6 = await ExchangeAsync(lab, ConvertHandshake.ConnectMessage(new IPEndPoint(v6, 82)));
        var portUnreachable6 = await ExchangeAsync(lab, ConvertHandshake.ConnectMessage(new IPEndPoint(v6, 83)));
        var noRoute = await ExchangeAsync(lab, ConvertHandshake.ConnectMessage(IPEndPoint.Parse("198.18.77.1:80")));
        await proxy.StopAsync(ProxyLab.Timeout);
        TestContext.Progress.WriteLine(proxy.Output);

        Assert.Multiple(() =>
        {
            Assert.That(hostProhibited, Is.EqualTo(new byte[] { 1, 2, 0x22, 0x63, 30, 1, 97, 10 }), "Destination Unreachable, ICMP code 10");
            Assert.That(portUnreachable, Is.EqualTo(new byte[] { 1, 2, 0x22, 0x63, 30, 1, 97, 3 }), "Destination Unreachable, ICMP code 3");
            Assert.That(adminProhibited6, Is.EqualTo(new byte[] { 1, 2, 0x22, 0x63, 30, 1, 97, 1 }), "Destination Unreachable, ICMPv6 code 1");
            Assert.That(portUnreachable6, Is.EqualTo(new byte[] { 1, 2, 0x22, 0x63, 30, 1, 97, 4 }), "Destination Unreachable, ICMPv6 code 4");
            Assert.That(noRoute, Is.EqualTo(new byte[] { 1, 2, 0x22, 0x63, 30, 1, 65, 1 }), "Network Failure: no ICMP, the converter's own route");
            Assert.That(ProxyLab.Lines(proxy, "convert "), Has.Some.Contains("(icmp type 3 code 10)"));
            Assert.That(ProxyLab.Lines(proxy, "proxysel: convert "), Has.Some.Contains("connect_failed=5"));
        });
    }
}
