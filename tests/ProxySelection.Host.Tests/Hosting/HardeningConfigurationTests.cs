using Microsoft.Extensions.Configuration.Memory;
using ProxySelection.Host.Hosting;

namespace ProxySelection.Host.Tests.Hosting;

/// <summary>Issue 12's settings: probe rate limits, observed-fact TTL, adoption timeout, SOCKS per-source limits, hold bounds, the domain edge.</summary>
public sealed class HardeningConfigurationTests
{
    private string _directory = "";

    [SetUp]
    public void CreateDirectory() => _directory = Directory.CreateTempSubdirectory("psel-hardening-").FullName;

    [TearDown]
    public void RemoveDirectory() => Directory.Delete(_directory, recursive: true);

    [Test]
    public void Load_EveryHardeningKey_ReachesTheEngine()
    {
        var result = Load("""
            { "Proxy": { "Socks": "198.18.0.1:1080",
                         "ProbeRatePerSourcePrefix": 10, "ProbeRatePerDestination": 3, "ProbeRateTableEntries": 1000, "ProbeRateGlobal": 200,
                         "ObservedTtl": "20s", "AdoptionTimeout": "5s", "SocksMaxHandshakesPerSource": 4,
                         "SocksMaxConnectionsPerSource": 50, "MaxHeldSyns": 100, "QueueWaitRoom": 32,
                         "EdgeInterfaces": ["eth1", "ppp0"] } }
            """);

        Assert.That(result.IsValid, Is.True, string.Join("; ", result.Errors));
        var engine = result.Engine!;
        Assert.Multiple(() =>
        {
            Assert.That(engine.Negotiation.ProbeRatePerSourcePrefix, Is.EqualTo(10));
            Assert.That(engine.Negotiation.ProbeRatePerDestination, Is.EqualTo(3));
            Assert.That(engine.Negotiation.ProbeRateGlobal, Is.EqualTo(200));
            Assert.That(engine.Negotiation.ProbeRateTableEntries, Is.EqualTo(1000));
            Assert.That(engine.Negotiation.Cache.ObservedTtl, Is.EqualTo(TimeSpan.FromSeconds(20)));
            Assert.That(engine.AdoptionTimeout, Is.EqualTo(TimeSpan.FromSeconds(5)));
            Assert.That(engine.Socks!.MaxHandshakesPerSource, Is.EqualTo(4));
            Assert.That(engine.Socks.MaxConnectionsPerSource, Is.EqualTo(50));
            Assert.That(engine.MaxHeldSyns, Is.EqualTo(100));
            Assert.That(engine.QueueWaitRoom, Is.EqualTo(32));
            Assert.That(engine.EdgeInterfaces, Is.EqualTo(new[] { "eth1", "ppp0" }));
            Assert.That(ProxySelection.Engine.ProxyEngine.RulesetOptions(engine).EdgeInterfaces, Is.EqualTo(new[] { "eth1", "ppp0" }));
            Assert.That(engine.Validate(), Is.Empty);
        });
    }

    [Test]
    public void Load_EmptyFile_HardeningDefaultsAsDocumented()
    {
        var result = Load("{}");

        Assert.That(result.IsValid, Is.True, string.Join("; ", result.Errors));
        var engine = result.Engine!;
        Assert.Multiple(() =>
        {
            Assert.That(engine.Negotiation.ProbeRatePerSourcePrefix, Is.EqualTo(64));
            Assert.That(engine.Negotiation.ProbeRatePerDestination, Is.EqualTo(16));
            Assert.That(engine.Negotiation.ProbeRateGlobal, Is.EqualTo(512));
            Assert.That(engine.Negotiation.ProbeRateTableEntries, Is.EqualTo(65_536));
            Assert.That(engine.Negotiation.Cache.ObservedTtl, Is.EqualTo(TimeSpan.FromSeconds(60)));
            Assert.That(engine.AdoptionTimeout, Is.EqualTo(TimeSpan.FromSeconds(3)));
            Assert.That(engine.MaxHeldSyns, Is.EqualTo(256));
            Assert.That(engine.QueueWaitRoom, Is.EqualTo(64));
            Assert.That(engine.EdgeInterfaces, Is.Empty);
        });
    }

    [Test]
    public void Load_ProbeRateGlobalZero_TurnsTheGlobalCapOff()
    {
        var result = Load("""{ "Proxy": { "ProbeRateGlobal": 0 } }""");

        Assert.That(result.IsValid, Is.True, string.Join("; ", result.Errors));
        Assert.That(result.Engine!.Negotiation.ProbeRateGlobal, Is.Zero);
        Assert.That(result.Engine.Negotiation.Validate(), Is.Empty);
    }

    [Test]
    public void Load_EdgeInterfaces_CommaSeparatedString()
    {
        var result = ProxyConfiguration.Load(null, ["Proxy:EdgeInterfaces=eth1, ppp0"], new MemoryConfigurationSource());

        Assert.That(result.IsValid, Is.True, string.Join("; ", result.Errors));
        Assert.That(result.Engine!.EdgeInterfaces, Is.EqualTo(new[] { "eth1", "ppp0" }));
    }

    [TestCase("""{ "Proxy": { "ProbeRatePerSourcePrefix": 0 } }""", "Proxy:ProbeRatePerSourcePrefix", "within 1..1,000,000 probes per second (was 0)")]
    [TestCase("""{ "Proxy": { "ProbeRatePerDestination": 1000001 } }""", "Proxy:ProbeRatePerDestination", "(was 1000001)")]
    [TestCase("""{ "Proxy": { "ProbeRateGlobal": -1 } }""", "Proxy:ProbeRateGlobal", "within 0..1,000,000 probes per second (0: no global cap) (was -1)")]
    [TestCase("""{ "Proxy": { "ProbeRateGlobal": 1000001 } }""", "Proxy:ProbeRateGlobal", "(was 1000001)")]
    [TestCase("""{ "Proxy": { "ProbeRateTableEntries": 0 } }""", "Proxy:ProbeRateTableEntries", "within 1..4,194,304 entries")]
    [TestCase("""{ "Proxy": { "ObservedTtl": "10m" } }""", "Proxy:ObservedTtl", "within 1 s..120 s")]
    [TestCase("""{ "Proxy": { "ObservedTtl": "0s" } }""", "Proxy:ObservedTtl", "within 1 s")]
    [TestCase("""{ "Proxy": { "AdoptionTimeout": "11s" } }""", "Proxy:AdoptionTimeout", "at most 10 s")]
    [TestCase("""{ "Proxy": { "AdoptionTimeout": "0s" } }""", "Proxy:AdoptionTimeout", "above 0")]
    [TestCase("""{ "Proxy": { "SocksMaxHandshakesPerSource": 0 } }""", "Proxy:SocksMaxHandshakesPerSource", "(was 0)")]
    [TestCase("""{ "Proxy": { "SocksMaxConnectionsPerSource": -3 } }""", "Proxy:SocksMaxConnectionsPerSource", "(was -3)")]
    [TestCase("""{ "Proxy": { "MaxHeldSyns": 0 } }""", "Proxy:MaxHeldSyns", "(was 0)")]
    [TestCase("""{ "Proxy": { "QueueWaitRoom": 8 } }""", "Proxy:QueueWaitRoom", "within 16..")]
    [TestCase("""{ "Proxy": { "EdgeInterfaces": ["eth0 -j ACCEPT"] } }""", "Proxy:EdgeInterfaces", "interface name")]
    [TestCase("""{ "Proxy": { "EdgeInterfaces": ["averyveryverylongname"] } }""", "Proxy:EdgeInterfaces", "1..15")]
    [TestCase("""{ "Proxy": { "EdgeInterfaces": ["eth/0"] } }""", "Proxy:EdgeInterfaces", "(was \"eth/0\")")]
    public void Load_InvalidHardeningSetting_RefusedNamingKeyAndReason(string json, string key, string reason)
    {
        var result = Load(json);

        Assert.That(result.IsValid, Is.False);
        Assert.That(result.Errors, Has.Some.StartsWith(key + ": ").And.Contains(reason));
    }

    private ProxyConfigurationResult Load(string json)
    {
        var path = Path.Combine(_directory, "proxysel.json");
        File.WriteAllText(path, json);
        return ProxyConfiguration.Load(path, [], new MemoryConfigurationSource());
    }
}
