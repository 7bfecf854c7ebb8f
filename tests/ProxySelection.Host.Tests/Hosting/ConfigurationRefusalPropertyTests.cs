using System.Text.Json;
using ProxySelection.Host.Hosting;
using ProxySelection.Host.Telemetry;
using FsProperty = FsCheck.NUnit.PropertyAttribute;

namespace ProxySelection.Host.Tests.Hosting;

/// <summary>
/// Every key, a bad value of every sort, through every source (file, PROXYSEL_* environment, --set): <c>proxysel run
/// --check</c> refuses it with exit 2 and a message naming the key, and no exception escapes. Environment variables
/// are process-wide, hence not parallel.
/// </summary>
[NonParallelizable]
public sealed class ConfigurationRefusalPropertyTests
{
    private enum Kind { Int, Duration, Choice, Bool, EndPoint, Path, Ports, Addresses, Url, Prefix, Text, SocketPath, Interfaces }

    private enum Source { File, Environment, Set }

    private static readonly (string Key, Kind Kind)[] Keys =
    [
        ("Proxy:Role", Kind.Choice), ("Proxy:Mode", Kind.Choice), ("Proxy:Policy", Kind.Choice), ("Proxy:ProxyId", Kind.Int),
        ("Proxy:Priority", Kind.Int), ("Proxy:KeyFile", Kind.Path), ("Proxy:KeyId", Kind.Int), ("Proxy:VerifyKeyFile", Kind.Path),
        ("Proxy:VerifyKeyId", Kind.Int), ("Proxy:Ports", Kind.Ports), ("Proxy:AnnounceAddresses", Kind.Addresses), ("Proxy:QueueNumber", Kind.Int),
        ("Proxy:Capacity", Kind.Int), ("Proxy:ProbeTimeout", Kind.Duration), ("Proxy:ChainPrefix", Kind.Prefix), ("Proxy:DrainTimeout", Kind.Duration),
        ("Proxy:IdleTimeout", Kind.Duration), ("Proxy:ControlSocket", Kind.SocketPath), ("Proxy:Socks", Kind.EndPoint), ("Proxy:SocksUsersFile", Kind.Path),
        ("Proxy:EventsFile", Kind.Path), ("Proxy:Convert", Kind.EndPoint), ("Proxy:Logging", Kind.Choice), ("Proxy:LogLevel", Kind.Choice),
        ("Proxy:Debug", Kind.Bool),
        ("Proxy:ProbeRatePerSourcePrefix", Kind.Int), ("Proxy:ProbeRatePerDestination", Kind.Int), ("Proxy:ProbeRateTableEntries", Kind.Int),
        ("Proxy:ProbeRateGlobal", Kind.Int),
        ("Proxy:ObservedTtl", Kind.Duration), ("Proxy:AdoptionTimeout", Kind.Duration), ("Proxy:SocksMaxHandshakesPerSource", Kind.Int),
        ("Proxy:SocksMaxConnectionsPerSource", Kind.Int), ("Proxy:MaxHeldSyns", Kind.Int), ("Proxy:QueueWaitRoom", Kind.Int),
        ("Proxy:EdgeInterfaces", Kind.Interfaces),
        ("Proxy:KernelFastPath", Kind.Bool), ("Proxy:KernelSigning", Kind.Bool), ("Proxy:KernelJoins", Kind.Bool), ("Proxy:RaisedScheduling", Kind.Bool),
        ("Proxy:Instance:Enabled", Kind.Bool), ("Proxy:Instance:Id", Kind.Text),
        ("Proxy:Instance:AnnounceCommand", Kind.Text), ("Proxy:Instance:WithdrawCommand", Kind.Text), ("Proxy:Instance:ConvergenceTime", Kind.Duration),
        ("Telemetry:ServiceName", Kind.Text), ("Telemetry:Console", Kind.Bool), ("Telemetry:ExportInterval", Kind.Duration),
        ("Telemetry:Otlp:Endpoint", Kind.Url), ("Telemetry:Otlp:Protocol", Kind.Choice), ("Telemetry:Prometheus:Endpoint", Kind.Url),
        ("Logging:LogLevel:Default", Kind.Choice),
    ];

    /// <summary>
    /// Bad in every source (as text): for every key of the kind. (An unpaired surrogate read from a JSON file arrives as
    /// U+FFFD, a fine file or service name: those kinds get one with a control character too.)
    /// </summary>
    private static readonly Dictionary<Kind, string[]> BadTexts = new()
    {
        [Kind.Int] = ["", "NaN", "Infinity", "99999999999999999999", "2147483648", "-1", "-99999999999", "1.5", "0x10", "one", "１２", "1e3", "\ud800"],
        [Kind.Duration] = ["", "NaNs", "Infinitys", "99999999999999h", "1e400ms", "-5s", "5", "5 parsecs", "∞s", "10x", "99:99:99:99"],
        [Kind.Choice] = ["", "sideways", "5", "-1", "ｅｘｐｌｉｃｉｔ", "☃"],
        [Kind.Bool] = ["", "yes", "1", "truee", "☃"],
        [Kind.EndPoint] = ["", "0.0.0.0", "0.0.0.0:0", "0.0.0.0:70000", "host.example:80", "[::1]", "1.2.3.4:-1", "☃:1"],
        [Kind.Path] = ["", "/nonexistent-psel/x", "a\u0001b", "\ud800\u0002", new string('x', 5000)],
        [Kind.Ports] = ["", "0", "70000", "80,http", "-1", "1.5", "８０", "99999999999"],
        [Kind.Addresses] = ["proxy.example", "127.0.0.1", "198.18.7", "224.0.0.1", "::1", "☃"],
        [Kind.Url] = ["", "collector:4317", "ftp://198.18.0.1:1/a", "not a url", "http://", "☃"],
        [Kind.Prefix] = ["", "has space", new string('A', 17), "ünï", "a/b"],
        [Kind.Text] = ["", " ", "a\u0007", "\udc00\u0003", new string('y', 5000)],
        [Kind.SocketPath] = ["", "relative/path.sock", "/run/" + new string('s', 200)],
        [Kind.Interfaces] = ["a b", "x/y", new string('e', 16), "☃", "eth0;reboot"],
    };

    /// <summary>Wrong JSON kinds (and out-of-range numbers) for the file source, per kind.</summary>
    private static readonly Dictionary<Kind, string[]> BadJson = new()
    {
        [Kind.Int] = ["""{"a":1}""", "[1,2]", "true", "1e40", "-1", "1.5"],
        [Kind.Duration] = ["""{"a":1}""", "[1]", "true", "5", "1e400"],
        [Kind.Choice] = ["""{"a":1}""", "[\"first\"]", "true", "5"],
        [Kind.Bool] = ["""{"a":1}""", "[true]", "5", "\"maybe\""],
        [Kind.EndPoint] = ["""{"a":1}""", "[\"0.0.0.0:1080\"]", "true", "5"],
        [Kind.Path] = ["""{"a":1}""", "[\"x\"]", """{"0":"x"}"""],
        [Kind.Ports] = ["""{"a":80}""", "[[80]]", "[true]", "true", "[80,{\"x\":1}]", "[null]", "1e40"],
        [Kind.Addresses] = ["""{"a":"198.18.0.1"}""", "[[\"198.18.0.1\"]]", "true", "5", "[1]"],
        [Kind.Url] = ["""{"a":1}""", "[\"http://198.18.0.1:1/m\"]", "true", "5"],
        [Kind.Prefix] = ["""{"a":1}""", "[\"PSEL\"]"],
        [Kind.Text] = ["""{"a":1}""", "[\"x\"]"],
        [Kind.SocketPath] = ["""{"a":1}""", "[\"/run/x.sock\"]", "true", "5"],
        [Kind.Interfaces] = ["""{"a":"eth0"}""", "[[\"eth0\"]]", "[\"a b\"]"],
    };

    /// <summary>Makes any text bad for the kind, so arbitrary junk can ride along.</summary>
    private static string Spoil(Kind kind, string junk) => kind switch
    {
        Kind.Path or Kind.Text => "\u0001" + junk,
        Kind.Prefix or Kind.Interfaces => "!" + junk,
        Kind.SocketPath => "rel" + junk,
        Kind.Choice => junk + "qq9",
        _ => "x" + junk,
    };

    private string _directory = "";

    [SetUp]
    public void CreateDirectory() => _directory = Directory.CreateTempSubdirectory("psel-refuse-").FullName;

    [TearDown]
    public void RemoveDirectory() => Directory.Delete(_directory, recursive: true);

    [Test]
    public void Keys_CoverEveryKeyOfTheOptions()
    {
        var known = ConfigurationSchema.KeysOf(typeof(ProxyHostOptions)).Where(k => k is not "Instance").Select(k => "Proxy:" + k)
            .Concat(ConfigurationSchema.KeysOf(typeof(InstanceSettings)).Select(k => "Proxy:Instance:" + k))
            .Concat(ConfigurationSchema.KeysOf(typeof(TelemetryOptions)).Where(k => k is not ("Otlp" or "Prometheus")).Select(k => "Telemetry:" + k))
            .Concat(ConfigurationSchema.KeysOf(typeof(OtlpSettings)).Select(k => "Telemetry:Otlp:" + k))
            .Concat(ConfigurationSchema.KeysOf(typeof(PrometheusSettings)).Select(k => "Telemetry:Prometheus:" + k));

        Assert.That(Keys.Select(k => k.Key), Is.SupersetOf(known), "a new key needs its bad values here");
    }

    /// <summary>A listed bad value or spoiled junk, through one source: exit 2, the key named, no exception.</summary>
#pragma warning disable NUnit1027 // FsCheck supplies the arguments, not NUnit.
    [FsProperty(MaxTest = 600)]
    public bool BadValue_AnySource_RefusedWithExit2NamingTheKey(int keyPick, int sourcePick, int valuePick, string? junk)
#pragma warning restore NUnit1027
    {
        var (key, kind) = Keys[Math.Abs(keyPick % Keys.Length)];
        var source = (Source)Math.Abs(sourcePick % 3);
        var texts = BadTexts[kind].Append(Spoil(kind, junk ?? "")).ToArray();
        string? json = null;
        string text = texts[Math.Abs(valuePick % texts.Length)];
        if (source == Source.File && valuePick % 2 == 0)
        {
            json = BadJson[kind][Math.Abs(valuePick / 2 % BadJson[kind].Length)];
        }

        if (source == Source.Environment)
        {
            // An environment variable cannot hold NUL, and an empty one is no variable.
            text = text.Replace("\0", "", StringComparison.Ordinal);
            text = text.Length == 0 ? Spoil(kind, "") : text;
        }

        var (code, stderr) = Run(key, source, text, json);
        return code == ExitCodes.Usage && stderr.Contains(key + ":", StringComparison.Ordinal);
    }

    [TestCase("""{ "Proxy": 5 }""", "Proxy")]
    [TestCase("""{ "Proxy": "explicit" }""", "Proxy")]
    [TestCase("""{ "Telemetry": true }""", "Telemetry")]
    [TestCase("""{ "Telemetry": { "Otlp": "http://198.18.0.1:4317" } }""", "Telemetry:Otlp")]
    [TestCase("""{ "Logging": 5 }""", "Logging")]
    [TestCase("""{ "Logging": { "LogLevel": { "Default": { "a": 1 } } } }""", "Logging:LogLevel:Default")]
    [TestCase("""{ "Logging": { "Levels": {} } }""", "Logging:Levels")]
    [TestCase("""{ "Proxy": { "Ports": { "a": 80 } } }""", "Proxy:Ports")]
    public void Section_WrongKind_RefusedNamingIt(string json, string key)
    {
        var path = Path.Combine(_directory, "bad.json");
        File.WriteAllText(path, json);

        var (code, stderr) = Invoke(["run", "--check", "--config", path]);

        Assert.That(code, Is.EqualTo(ExitCodes.Usage), stderr);
        Assert.That(stderr, Does.Contain("configuration: " + key + ":"));
    }

    [TestCase("Proxy:ProbeTimeout=300ms")]
    [TestCase("Proxy:DrainTimeout=1.5s")]
    [TestCase("Proxy:IdleTimeout=1h")]
    [TestCase("Proxy:IdleTimeout=00:10:00")]
    [TestCase("Proxy:LogLevel=debug")]
    [TestCase("Logging:LogLevel:ProxySelection=Warning")]
    public void Check_GoodOverride_Exit0(string setting)
    {
        var (code, stderr) = Invoke(["run", "--check", "--set", setting]);

        Assert.That(code, Is.EqualTo(ExitCodes.Ok), stderr);
    }

    private (int Code, string Stderr) Run(string key, Source source, string text, string? json)
    {
        switch (source)
        {
            case Source.File:
                var path = Path.Combine(_directory, "c.json");
                File.WriteAllText(path, Nest(key, json ?? JsonSerializer.Serialize(text)));
                return Invoke(["run", "--check", "--config", path]);
            case Source.Environment:
                string variable = "PROXYSEL_" + key.Replace(":", "__", StringComparison.Ordinal);
                Environment.SetEnvironmentVariable(variable, text);
                try
                {
                    return Invoke(["run", "--check"]);
                }
                finally
                {
                    Environment.SetEnvironmentVariable(variable, null);
                }

            default:
                return Invoke(["run", "--check", "--set", key + "=" + text]);
        }
    }

    private static string Nest(string key, string value)
    {
        foreach (var part in key.Split(':').Reverse())
        {
            value = "{" + JsonSerializer.Serialize(part) + ":" + value + "}";
        }

        return value;
    }

    private static (int Code, string Stderr) Invoke(string[] args)
    {
        using var stdout = new MemoryStream();
        using var stderr = new StringWriter();
        int code = Cli.Run(args, stdout, stderr);
        return (code, stderr.ToString());
    }
}
