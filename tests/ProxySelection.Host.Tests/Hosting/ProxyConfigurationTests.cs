using Microsoft.Extensions.Configuration.Memory;
using ProxySelection.Host.Hosting;
using ProxySelection.Negotiation;

namespace ProxySelection.Host.Tests.Hosting;

public sealed class ProxyConfigurationTests
{
    private string _directory = "";

    [SetUp]
    public void CreateDirectory() => _directory = Directory.CreateTempSubdirectory("psel-config-").FullName;

    [TearDown]
    public void RemoveDirectory() => Directory.Delete(_directory, recursive: true);

    /// <summary>Invalid settings, the key the message must name and a fragment of the reason.</summary>
    private static readonly object[] InvalidConfigurations =
    [
        new object[] { """{ "Proxy": { "Ports": [0] } }""", "Proxy:Ports", "1..65535 (was 0)" },
        new object[] { """{ "Proxy": { "Ports": [443, 70000] } }""", "Proxy:Ports", "1..65535 (was 70000)" },
        new object[] { """{ "Proxy": { "Ports": "" } }""", "Proxy:Ports", "at least one port" },
        new object[] { """{ "Proxy": { "Ports": [] } }""", "Proxy:Ports", "at least one port" },
        new object[] { """{ "Proxy": { "Ports": "80,http" } }""", "Proxy:Ports", "\"http\" is not a whole number" },
        new object[] { """{ "Proxy": { "Role": "sideways" } }""", "Proxy:Role", "unknown value \"sideways\"; expected downgrade, upgrade" },
        new object[] { """{ "Proxy": { "Mode": "loud" } }""", "Proxy:Mode", "unknown value \"loud\"; expected explicit, implicit" },
        new object[] { """{ "Proxy": { "Policy": "random" } }""", "Proxy:Policy", "expected first, nearest-server, priority" },
        new object[] { """{ "Proxy": { "ProxyId": 0 } }""", "Proxy:ProxyId", "must be 1..255" },
        new object[] { """{ "Proxy": { "ProxyId": 256 } }""", "Proxy:ProxyId", "(was 256)" },
        new object[] { """{ "Proxy": { "ProxyId": "one" } }""", "Proxy:ProxyId", "\"one\" is not a whole number" },
        new object[] { """{ "Proxy": { "Priority": 16 } }""", "Proxy:Priority", "must be 0..15" },
        new object[] { """{ "Proxy": { "ProbeTimeout": "500ms" } }""", "Proxy:ProbeTimeout", "within 20..400 ms" },
        new object[] { """{ "Proxy": { "ProbeTimeout": "10ms" } }""", "Proxy:ProbeTimeout", "(was 10 ms)" },
        new object[] { """{ "Proxy": { "ProbeTimeout": "250" } }""", "Proxy:ProbeTimeout", "with a unit" },
        new object[] { """{ "Proxy": { "Capacity": 0 } }""", "Proxy:Capacity", "at least 1 (was 0)" },
        new object[] { """{ "Proxy": { "QueueNumber": 65536 } }""", "Proxy:QueueNumber", "must be 0..65534" },
        new object[] { """{ "Proxy": { "QueueNumber": 65535 } }""", "Proxy:QueueNumber", "must be 0..65534 (the next queue is the egress hook's) (was 65535)" },
        new object[] { """{ "Proxy": { "QueueNumber": -1 } }""", "Proxy:QueueNumber", "(was -1)" },
        new object[] { """{ "Proxy": { "ChainPrefix": "" } }""", "Proxy:ChainPrefix", "letters, digits" },
        new object[] { """{ "Proxy": { "ChainPrefix": "PSEL WITH SPACES" } }""", "Proxy:ChainPrefix", "letters, digits" },
        new object[] { """{ "Proxy": { "DrainTimeout": "10m" } }""", "Proxy:DrainTimeout", "0 s..5 min" },
        new object[] { """{ "Proxy": { "IdleTimeout": "0s" } }""", "Proxy:IdleTimeout", "1 s..1 day" },
        new object[] { """{ "Proxy": { "KeyFile": "no-such.key" } }""", "Proxy:KeyFile", "cannot read" },
        new object[] { """{ "Proxy": { "ProbTimeout": "300ms" } }""", "Proxy:ProbTimeout", "unknown key (did you mean ProbeTimeout?)" },
        new object[] { """{ "Proxi": { "Role": "upgrade" } }""", "Proxi", "unknown section (did you mean Proxy?)" },
        new object[] { """{ "Proxy": { "ControlSocket": "run/proxysel.sock" } }""", "Proxy:ControlSocket", "must be an absolute path" },
        new object[] { """{ "Proxy": { "ControlSocket": "/run/proxysel/""" + new string('x', 100) + """.sock" } }""", "Proxy:ControlSocket", "at most 107 bytes" },
        new object[] { """{ "Proxy": { "ControlSocket": "" } }""", "Proxy:ControlSocket", "or \"none\"" },
        new object[] { """{ "Proxy": { "Logging": "xml" } }""", "Proxy:Logging", "unknown value \"xml\"; expected plain, json, systemd" },
        new object[] { """{ "Proxy": { "KeyId": 0 } }""", "Proxy:KeyId", "must be 1..255 (was 0)" },
        new object[] { """{ "Proxy": { "VerifyKeyFile": "next.key", "VerifyKeyId": 2 } }""", "Proxy:VerifyKeyFile", "needs Proxy:KeyFile" },
        new object[] { """{ "Proxy": { "KeyFile": "op.key", "VerifyKeyFile": "next.key" } }""", "Proxy:VerifyKeyFile", "needs Proxy:VerifyKeyId" },
        new object[] { """{ "Proxy": { "KeyFile": "op.key", "VerifyKeyFile": "next.key", "VerifyKeyId": 1 } }""", "Proxy:VerifyKeyId", "must differ from Proxy:KeyId" },
        new object[] { """{ "Proxy": { "VerifyKeyId": 3 } }""", "Proxy:VerifyKeyId", "Proxy:VerifyKeyFile is not" },
        new object[] { """{ "Proxy": { "AnnounceAddresses": ["198.18.7"] } }""", "Proxy:AnnounceAddresses", "\"198.18.7\" is not an IPv4 or IPv6 address" },
        new object[] { """{ "Proxy": { "AnnounceAddresses": "proxy.example" } }""", "Proxy:AnnounceAddresses", "is not an IPv4 or IPv6 address" },
        new object[] { """{ "Proxy": { "AnnounceAddresses": ["224.0.0.1"] } }""", "Proxy:AnnounceAddresses", "224.0.0.1 is not a unicast address" },
        new object[] { """{ "Proxy": { "AnnounceAddresses": ["127.0.0.1"] } }""", "Proxy:AnnounceAddresses", "not a unicast address a client can join" },
        new object[] { """{ "Proxy": { "AnnounceAddresses": ["0.0.0.0"] } }""", "Proxy:AnnounceAddresses", "not a unicast address" },
        new object[] { """{ "Proxy": { "AnnounceAddresses": ["255.255.255.255"] } }""", "Proxy:AnnounceAddresses", "not a unicast address" },
        new object[] { """{ "Proxy": { "AnnounceAddresses": ["169.254.1.1"] } }""", "Proxy:AnnounceAddresses", "not a unicast address" },
        new object[] { """{ "Proxy": { "AnnounceAddresses": ["fe80::1"] } }""", "Proxy:AnnounceAddresses", "not a unicast address" },
        new object[] { """{ "Proxy": { "AnnounceAddresses": ["ff02::1"] } }""", "Proxy:AnnounceAddresses", "not a unicast address" },
        new object[] { """{ "Proxy": { "AnnounceAddresses": "198.18.7.1, 198.18.7.1" } }""", "Proxy:AnnounceAddresses", "198.18.7.1 is listed twice" },
        new object[] { """{ "Proxy": { "Role": "upgrade", "AnnounceAddresses": ["198.18.7.1"] } }""", "Proxy:AnnounceAddresses", "downgrade role only" },
        new object[] { """{ "Proxy": { "Instance": { "Enabled": true } } }""", "Proxy:Instance:Enabled", "needs Proxy:AnnounceAddresses" },
        new object[] { """{ "Proxy": { "Instance": { "Id": "proxy 3" } } }""", "Proxy:Instance:Id", "printable characters without spaces" },
        new object[] { """{ "Proxy": { "Instance": { "Id": "" } } }""", "Proxy:Instance:Id", "1..128" },
        new object[] { """{ "Proxy": { "Instance": { "AnnounceCommand": "birdc enable service", "WithdrawCommand": "birdc disable service" } } }""", "Proxy:Instance:AnnounceCommand", "needs Proxy:Instance:Enabled" },
        new object[] { """{ "Proxy": { "AnnounceAddresses": ["198.18.7.1"], "Instance": { "Enabled": true, "AnnounceCommand": "birdc enable service" } } }""", "Proxy:Instance:WithdrawCommand", "is needed with the other" },
        new object[] { """{ "Proxy": { "AnnounceAddresses": ["198.18.7.1"], "Instance": { "Enabled": true, "AnnounceCommand": " ", "WithdrawCommand": "true" } } }""", "Proxy:Instance:AnnounceCommand", "must not be empty" },
        new object[] { """{ "Proxy": { "Instance": { "Enable": true } } }""", "Proxy:Instance:Enable", "unknown key (did you mean Enabled?)" },
        new object[] { """{ "Proxy": { "Instance": true } }""", "Proxy:Instance", "expected a section with Enabled, Id, AnnounceCommand, WithdrawCommand" },
    ];

    [TestCaseSource(nameof(InvalidConfigurations))]
    public void Load_InvalidSetting_RefusedNamingKeyAndReason(string json, string key, string reason)
    {
        var result = Load(json);

        Assert.That(result.IsValid, Is.False);
        Assert.That(result.Errors, Has.Some.StartsWith(key + ": ").And.Contains(reason));
    }

    [Test]
    public void Load_ShortKeyFile_RefusedWithItsLength()
    {
        File.WriteAllText(Path.Combine(_directory, "short.key"), "00112233445566778899");

        var result = Load("""{ "Proxy": { "KeyFile": "short.key" } }""");

        Assert.That(result.Errors, Has.Some.StartsWith("Proxy:KeyFile: ").And.Contains("at least 16 bytes (was 10)"));
    }

    [Test]
    public void Load_MalformedJson_NamesFileAndLine()
    {
        var path = Write("""
            {
              "Proxy": {
                "Role": "upgrade"
                "Mode": "explicit"
              }
            }
            """);

        var result = ProxyConfiguration.Load(path, [], NoEnvironment());

        Assert.That(result.Errors, Has.Count.EqualTo(1));
        Assert.That(result.Errors[0], Does.StartWith(path + ": line 4,").And.Contains("malformed JSON"));
    }

    [Test]
    public void Load_MissingFile_NamesFile()
    {
        var path = Path.Combine(_directory, "absent.json");

        var result = ProxyConfiguration.Load(path, [], NoEnvironment());

        Assert.That(result.Errors, Is.EqualTo(new[] { path + ": configuration file not found" }));
    }

    [Test]
    public void Load_SeveralInvalidSettings_ReportsEach()
    {
        var result = Load("""{ "Proxy": { "ProxyId": 0, "Priority": 99, "Capacity": -5 } }""");

        Assert.That(result.Errors.Select(e => e[..e.IndexOf(": ", StringComparison.Ordinal)]),
            Is.EquivalentTo(new[] { "Proxy:ProxyId", "Proxy:Priority", "Proxy:Capacity" }));
    }

    [Test]
    public void Load_EmptyFile_DocumentedDefaults()
    {
        var result = Load("{}");

        Assert.That(result.IsValid, Is.True, string.Join("; ", result.Errors));
        var options = result.Options!;
        Assert.Multiple(() =>
        {
            Assert.That(options.Role, Is.EqualTo(ProxyRole.Downgrade));
            Assert.That(options.Mode, Is.EqualTo(ProxyMode.Explicit));
            Assert.That(options.Policy, Is.EqualTo(SelectionPolicy.First));
            Assert.That(options.Ports, Is.EqualTo(new[] { 80, 443 }));
            Assert.That(options.ProbeTimeout, Is.EqualTo(TimeSpan.FromMilliseconds(250)));
            Assert.That(options.DrainTimeout, Is.EqualTo(TimeSpan.FromSeconds(10)));
            Assert.That(result.Engine!.Negotiation.ProxyId, Is.EqualTo(1));
            Assert.That(result.Engine.ChainPrefix, Is.EqualTo("PSEL"));
        });
    }

    [Test]
    public void Load_FullFile_EveryKeyReachesTheEngine()
    {
        File.WriteAllText(Path.Combine(_directory, "op.key"), "00112233445566778899aabbccddeeff");

        var result = Load("""
            { "Proxy": { "Role": "upgrade", "Mode": "implicit", "Policy": "nearest-server", "ProxyId": 7, "Priority": 3,
                         "KeyFile": "op.key", "Ports": [8080, 8443], "QueueNumber": 5, "Capacity": 12,
                         "ProbeTimeout": "300ms", "ChainPrefix": "PX", "DrainTimeout": "2s", "IdleTimeout": "00:01:00" } }
            """);

        Assert.That(result.IsValid, Is.True, string.Join("; ", result.Errors));
        var engine = result.Engine!;
        Assert.Multiple(() =>
        {
            Assert.That(engine.Negotiation.Role, Is.EqualTo(ProxyRole.Upgrade));
            Assert.That(engine.Negotiation.Mode, Is.EqualTo(SignalingMode.Implicit));
            Assert.That(engine.Negotiation.Policy, Is.EqualTo(SelectionPolicy.NearestServer));
            Assert.That(engine.Negotiation.ProxyId, Is.EqualTo(7));
            Assert.That(engine.Negotiation.Priority, Is.EqualTo(3));
            Assert.That(engine.Negotiation.MaxConnections, Is.EqualTo(12));
            Assert.That(engine.Negotiation.ProbeTimeout, Is.EqualTo(TimeSpan.FromMilliseconds(300)));
            Assert.That(engine.Ports, Is.EqualTo(new ushort[] { 8080, 8443 }));
            Assert.That(engine.QueueNumber, Is.EqualTo(5));
            Assert.That(engine.ChainPrefix, Is.EqualTo("PX"));
            Assert.That(engine.IdleTimeout, Is.EqualTo(TimeSpan.FromMinutes(1)));
            Assert.That(result.Options!.DrainTimeout, Is.EqualTo(TimeSpan.FromSeconds(2)));
        });
    }

    [Test]
    public void Load_AnnounceAddresses_ArrayOrCommaSeparatedStringOfV4AndV6()
    {
        var array = Load("""{ "Proxy": { "AnnounceAddresses": ["198.18.7.1", "2001:db8::7"] } }""");
        var scalar = ProxyConfiguration.Load(null, ["Proxy:AnnounceAddresses=198.18.7.1, 2001:db8::7"], NoEnvironment());

        Assert.That(array.IsValid, Is.True, string.Join("; ", array.Errors));
        Assert.That(scalar.IsValid, Is.True, string.Join("; ", scalar.Errors));
        Assert.That(array.Options!.AnnounceAddresses, Is.EqualTo(new[] { "198.18.7.1", "2001:db8::7" }));
        Assert.That(scalar.Options!.AnnounceAddresses, Is.EqualTo(new[] { "198.18.7.1", "2001:db8::7" }));
    }

    [Test]
    public void Load_Precedence_FileThenEnvironmentThenOverrides()
    {
        var path = Write("""{ "Proxy": { "ProxyId": 2, "Priority": 2, "Capacity": 2 } }""");
        var environment = new MemoryConfigurationSource
        {
            InitialData = new Dictionary<string, string?> { ["Proxy:Priority"] = "3", ["Proxy:Capacity"] = "3" },
        };

        var result = ProxyConfiguration.Load(path, ["Proxy:Capacity=4", "Proxy:Ports=8080,8081"], environment);

        Assert.That(result.IsValid, Is.True, string.Join("; ", result.Errors));
        Assert.Multiple(() =>
        {
            Assert.That(result.Options!.ProxyId, Is.EqualTo(2));
            Assert.That(result.Options.Priority, Is.EqualTo(3));
            Assert.That(result.Options.Capacity, Is.EqualTo(4));
            Assert.That(result.Options.Ports, Is.EqualTo(new[] { 8080, 8081 }));
        });
    }

    [Test]
    public void Load_ProcessEnvironment_ReadsProxyVariablesAndIgnoresOtherProxyselVariables()
    {
        // Other PROXYSEL_ variables belong to tests and tools, not to the daemon's configuration.
        const string unrelated = "PROXYSEL_UNRELATED_SETTING_FOR_TEST";
        const string priority = "PROXYSEL_Proxy__Priority";
        Environment.SetEnvironmentVariable(unrelated, "/somewhere");
        Environment.SetEnvironmentVariable(priority, "7");
        try
        {
            var result = ProxyConfiguration.Load(null, []);

            Assert.That(result.IsValid, Is.True, string.Join("; ", result.Errors));
            Assert.That(result.Options!.Priority, Is.EqualTo(7));
        }
        finally
        {
            Environment.SetEnvironmentVariable(unrelated, null);
            Environment.SetEnvironmentVariable(priority, null);
        }
    }

    [Test]
    public void Load_OverrideWithoutEquals_Refused() =>
        Assert.That(ProxyConfiguration.Load(null, ["Proxy:ProxyId"], NoEnvironment()).Errors,
            Has.Some.Contains("expected KEY=VALUE"));

    [TestCase("250ms", 250)]
    [TestCase("1.5s", 1500)]
    [TestCase("2m", 120_000)]
    [TestCase("00:00:10", 10_000)]
    public void TryParseDuration_WithUnit_Parses(string text, int milliseconds)
    {
        Assert.That(ProxyConfiguration.TryParseDuration(text, out var value), Is.True);
        Assert.That(value, Is.EqualTo(TimeSpan.FromMilliseconds(milliseconds)));
    }

    [TestCase("250")]
    [TestCase("")]
    [TestCase("fast")]
    public void TryParseDuration_WithoutUnit_Refused(string text) =>
        Assert.That(ProxyConfiguration.TryParseDuration(text, out _), Is.False);

    [Test]
    public void RunCommand_InvalidConfiguration_ExitsWithUsageAndNamesKey()
    {
        var path = Write("""{ "Proxy": { "ProbeTimeout": "900ms" } }""");
        using var stdout = new MemoryStream();
        using var stderr = new StringWriter();

        var code = Cli.Run(["run", "--config", path], stdout, stderr);

        Assert.That(code, Is.EqualTo(ExitCodes.Usage));
        Assert.That(stderr.ToString(), Does.Contain("Proxy:ProbeTimeout: must be within 20..400 ms").And.Contain("refusing to start"));
    }

    [Test]
    public void RunCommand_ExplicitFlag_OverridesFile()
    {
        var path = Write("""{ "Proxy": { "ProxyId": 7 } }""");
        using var stdout = new MemoryStream();
        using var stderr = new StringWriter();

        // The flag's bad value must win over the file's good one, so the run stops at validation, before the kernel.
        var code = Cli.Run(["run", "--config", path, "--ports", "0"], stdout, stderr);

        Assert.That(code, Is.EqualTo(ExitCodes.Usage));
        Assert.That(stderr.ToString(), Does.Contain("Proxy:Ports: every port must be 1..65535 (was 0)"));
    }

    [Test]
    public void Load_InstanceSection_EveryKeyRead()
    {
        var result = Load("""
            { "Proxy": { "AnnounceAddresses": ["198.18.17.2"],
              "Instance": { "Enabled": true, "Id": "proxy-3", "AnnounceCommand": "birdc -s /run/bird.ctl enable service", "WithdrawCommand": "birdc -s /run/bird.ctl disable service" } } }
            """);

        Assert.That(result.IsValid, Is.True, string.Join("; ", result.Errors));
        var instance = result.Options!.Instance;
        Assert.Multiple(() =>
        {
            Assert.That(instance.Enabled, Is.True);
            Assert.That(instance.Id, Is.EqualTo("proxy-3"));
            Assert.That(instance.AnnounceCommand, Is.EqualTo("birdc -s /run/bird.ctl enable service"));
            Assert.That(instance.WithdrawCommand, Is.EqualTo("birdc -s /run/bird.ctl disable service"));
            Assert.That(InstanceMode.IdFor(instance), Is.EqualTo("proxy-3"));
        });
    }

    [Test]
    public void Load_InstanceOnTheCommandLine_OverridesTheFile()
    {
        var result = ProxyConfiguration.Load(Write("""{ "Proxy": { "Instance": { "Id": "from-file" } } }"""),
            ["Proxy:AnnounceAddresses=198.18.17.2", "Proxy:Instance:Enabled=true", "Proxy:Instance:Id=from-set"], NoEnvironment());

        Assert.That(result.IsValid, Is.True, string.Join("; ", result.Errors));
        Assert.That((result.Options!.Instance.Enabled, result.Options.Instance.Id), Is.EqualTo((true, "from-set")));
    }

    [Test]
    public void Load_NoInstanceSection_OffWithTheHostAndNamespaceAsId()
    {
        var result = Load("{}");

        Assert.That(result.IsValid, Is.True, string.Join("; ", result.Errors));
        var instance = result.Options!.Instance;
        Assert.Multiple(() =>
        {
            Assert.That(instance.Enabled, Is.False);
            Assert.That((instance.Id, instance.AnnounceCommand, instance.WithdrawCommand), Is.EqualTo(((string?)null, (string?)null, (string?)null)));
            Assert.That(InstanceMode.IdFor(instance), Does.StartWith(Environment.MachineName));
        });
    }

    private ProxyConfigurationResult Load(string json) => ProxyConfiguration.Load(Write(json), [], NoEnvironment());

    private string Write(string json)
    {
        var path = Path.Combine(_directory, "proxysel.json");
        File.WriteAllText(path, json);
        return path;
    }

    private static MemoryConfigurationSource NoEnvironment() => new();
}
