using System.Net;
using System.Net.Sockets;
using ProxySelection.Host.Hosting;
using ProxySelection.Interception.Netlink;
using ProxySelection.Interception.Nfqueue;
using ProxySelection.Interception.Rules;

namespace ProxySelection.Host.Tests.Hosting;

/// <summary>What the engine, the interception and the sockets throw at start, mapped to a class, an exit code and a line naming the setting.</summary>
public sealed class StartFailuresTests
{
    private static readonly IReadOnlySet<IPAddress> Local = new HashSet<IPAddress> { IPAddress.Parse("198.18.0.1"), IPAddress.Loopback };

    private static HostFacts Facts(bool netAdmin = true, Func<IPEndPoint, bool>? inUse = null) => new(netAdmin, Local, inUse ?? (_ => false));

    private static StartFailure Classify(Exception e, ProxyHostOptions? options = null, HostFacts? facts = null) =>
        StartFailures.Classify(e, options ?? new ProxyHostOptions(), facts ?? Facts());

    [Test]
    public void NfqueueEperm_WithNetAdmin_QueueTakenNamingTheQueue()
    {
        var failure = Classify(new NfqueueException("queue 7: bind queue", 1), new ProxyHostOptions { QueueNumber = 7 });

        Assert.That(failure.Kind, Is.EqualTo(StartFailureKind.QueueInUse));
        Assert.That(failure.ExitCode, Is.EqualTo(ExitCodes.QueueInUse));
        Assert.That(failure.Reason, Does.StartWith("Proxy:QueueNumber: NFQUEUE queue 7 or 8 (egress) is bound by another process"));
    }

    [Test]
    public void NfqueueEperm_WithoutNetAdmin_NotPermitted()
    {
        var failure = Classify(new NfqueueException("queue 0: bind queue", 1), facts: Facts(netAdmin: false));

        Assert.That(failure.ExitCode, Is.EqualTo(ExitCodes.NotPermitted));
        Assert.That(failure.Reason, Does.Contain("CAP_NET_ADMIN"));
    }

    [TestCase("iptables -t mangle -A PSEL exited 2: iptables v1.8.10 (nf_tables): Couldn't load target `NFQUEUE':No such file or directory", "NFQUEUE target")]
    [TestCase("iptables -t mangle -A PSEL exited 1: iptables: No chain/target/match by that name.", "an iptables feature")]
    [TestCase("iptables -A x exited 2: Couldn't load match `socket':No such file or directory", "socket match")]
    [TestCase("iptables -t mangle -A x exited 2: Couldn't load target `TPROXY'", "TPROXY target")]
    public void IptablesMissingFeature_KernelFeatureMissingNamingIt(string message, string named)
    {
        var failure = Classify(new InterceptionRulesException(message));

        Assert.That(failure.ExitCode, Is.EqualTo(ExitCodes.KernelFeatureMissing));
        Assert.That(failure.Reason, Does.Contain(named));
    }

    [Test]
    public void IptablesPermissionDenied_NotPermitted()
    {
        var failure = Classify(new InterceptionRulesException("iptables --version exited 4: iptables v1.8.10 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)"));

        Assert.That(failure.ExitCode, Is.EqualTo(ExitCodes.NotPermitted));
    }

    [Test]
    public void AddressInUse_NamesTheKeyAndEndpointFoundInUse()
    {
        var options = new ProxyHostOptions { Mode = ProxyMode.Socks, Socks = "198.18.0.1:1080" };

        var failure = Classify(new SocketException((int)SocketError.AddressAlreadyInUse), options, Facts(inUse: e => e.Port == 1080));

        Assert.That(failure.ExitCode, Is.EqualTo(ExitCodes.PortInUse));
        Assert.That(failure.Reason, Does.StartWith("Proxy:Socks: 198.18.0.1:1080 is in use"));
    }

    [Test]
    public void AddressNotAvailable_NamesTheKeyAndTheForeignAddress()
    {
        var options = new ProxyHostOptions { Mode = ProxyMode.Socks, Socks = "198.18.99.99:1080", Convert = "0.0.0.0:5124" };

        var failure = Classify(new SocketException((int)SocketError.AddressNotAvailable), options);

        Assert.That(failure.ExitCode, Is.EqualTo(ExitCodes.AddressNotAvailable));
        Assert.That(failure.Reason, Does.StartWith("Proxy:Socks: 198.18.99.99 is not an address of this host"));
    }

    [Test]
    public void WrappedInAggregate_ClassifiedByTheInnerException()
    {
        var failure = Classify(new AggregateException(new InvalidOperationException("outer", new SocketException((int)SocketError.AccessDenied))));

        Assert.That(failure.ExitCode, Is.EqualTo(ExitCodes.NotPermitted));
    }

    [Test]
    public void MptcpPmFamilyMissing_KernelFeatureMissing() =>
        Assert.That(Classify(new MptcpPmException("no mptcp_pm family in the controller's answer")).ExitCode, Is.EqualTo(ExitCodes.KernelFeatureMissing));

    [Test]
    public void Preflight_CarriesItsOwnClass()
    {
        var known = new StartFailure(StartFailureKind.KernelFeatureMissing, "net.mptcp.enabled=0: ...");

        Assert.That(Classify(new StartFailureException(known)), Is.EqualTo(known));
    }

    [Test]
    public void Unknown_OtherWithTheMessage()
    {
        var failure = Classify(new IOException("disk on fire"));

        Assert.That(failure.ExitCode, Is.EqualTo(ExitCodes.StartFailed));
        Assert.That(failure.Reason, Is.EqualTo("disk on fire"));
    }

    [TestCase("0\n", true)]
    [TestCase("1\n", false)]
    [TestCase(null, true)]
    public void MptcpProblem_FromTheSysctl(string? enabled, bool problem) =>
        Assert.That(HostChecks.MptcpProblem(enabled) is not null, Is.EqualTo(problem));

    [TestCase("Name:\tx\nCapEff:\t000001ffffffffff\n", true)]
    [TestCase("Name:\tx\nCapEff:\t0000000000000000\n", false)]
    [TestCase("Name:\tx\nCapEff:\t0000000000001000\n", true)]
    [TestCase("Name:\tx\n", false)]
    public void HasCapability_ReadsCapEffBit12(string status, bool expected) =>
        Assert.That(HostChecks.HasCapability(status, 12), Is.EqualTo(expected));
}
