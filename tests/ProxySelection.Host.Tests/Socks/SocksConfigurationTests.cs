using System.Net;
using Microsoft.Extensions.Configuration.Memory;
using ProxySelection.Host.Hosting;
using ProxySelection.Engine.Fronts;

namespace ProxySelection.Host.Tests.Socks;

/// <summary>The host-configured mode's keys: <c>Proxy:Mode=socks</c>, <c>Proxy:Socks</c>, <c>Proxy:SocksUsersFile</c>.</summary>
public sealed class SocksConfigurationTests
{
    private string _directory = "";

    [SetUp]
    public void CreateDirectory() => _directory = Directory.CreateTempSubdirectory("psel-socks-").FullName;

    [TearDown]
    public void RemoveDirectory() => Directory.Delete(_directory, recursive: true);

    private ProxyConfigurationResult Load(string json)
    {
        var path = Path.Combine(_directory, "proxysel.json");
        File.WriteAllText(path, json);
        return ProxyConfiguration.Load(path, [], new MemoryConfigurationSource());
    }

    [Test]
    public void Load_ModeSocks_NoInterceptionAndTheDefaultListener()
    {
        var result = Load("""{ "Proxy": { "Mode": "socks" } }""");

        Assert.That(result.IsValid, Is.True, string.Join("; ", result.Errors));
        Assert.Multiple(() =>
        {
            Assert.That(result.Options!.Mode, Is.EqualTo(ProxyMode.Socks));
            Assert.That(result.Engine!.Transparent, Is.False);
            Assert.That(result.Engine.Socks!.Listen, Is.EqualTo(IPEndPoint.Parse(ProxyHostOptions.DefaultSocks)));
            Assert.That(result.Engine.Socks.Credentials, Is.Null);
        });
    }

    [Test]
    public void Load_TransparentModeWithSocks_ServesBoth()
    {
        var result = Load("""{ "Proxy": { "Mode": "explicit", "Socks": "[2001:db8::1]:1081" } }""");

        Assert.That(result.IsValid, Is.True, string.Join("; ", result.Errors));
        Assert.Multiple(() =>
        {
            Assert.That(result.Engine!.Transparent, Is.True);
            Assert.That(result.Engine.Socks!.Listen, Is.EqualTo(new IPEndPoint(IPAddress.Parse("2001:db8::1"), 1081)));
        });
    }

    [Test]
    public void Load_ConvertBesideATransparentMode_ConvertFrontOnly()
    {
        var result = Load("""{ "Proxy": { "Convert": "0.0.0.0:5124" } }""");

        Assert.That(result.IsValid, Is.True, string.Join("; ", result.Errors));
        Assert.Multiple(() =>
        {
            Assert.That(result.Engine!.Transparent, Is.True);
            Assert.That(result.Engine.Socks!.Convert, Is.EqualTo(IPEndPoint.Parse("0.0.0.0:5124")));
            Assert.That(result.Engine.Socks.Listen, Is.Null);
        });
    }

    [Test]
    public void Load_TransparentModeWithoutSocks_NoSocksFront() =>
        Assert.That(Load("{}").Engine!.Socks, Is.Null);

    [Test]
    public void Load_UsersFile_RelativeToTheConfigurationFolder()
    {
        File.WriteAllText(Path.Combine(_directory, "users"), "# who may connect\nalice:wonderland\n\nbob:builder\n");

        var result = Load("""{ "Proxy": { "Mode": "socks", "SocksUsersFile": "users" } }""");

        Assert.That(result.IsValid, Is.True, string.Join("; ", result.Errors));
        Assert.That(result.Engine!.Socks!.Credentials!.Count, Is.EqualTo(2));
    }

    private static readonly object[] InvalidConfigurations =
    [
        new object[] { """{ "Proxy": { "Mode": "socks", "Socks": "0.0.0.0" } }""", "Proxy:Socks", "address and a port" },
        new object[] { """{ "Proxy": { "Mode": "socks", "Socks": "0.0.0.0:0" } }""", "Proxy:Socks", "port 1..65535" },
        new object[] { """{ "Proxy": { "Mode": "socks", "Socks": "0.0.0.0:70000" } }""", "Proxy:Socks", "(was \"0.0.0.0:70000\")" },
        new object[] { """{ "Proxy": { "Mode": "socks", "Socks": "proxy.example:1080" } }""", "Proxy:Socks", "address and a port" },
        new object[] { """{ "Proxy": { "SocksUsersFile": "users" } }""", "Proxy:SocksUsersFile", "no SOCKS server runs" },
        new object[] { """{ "Proxy": { "Mode": "socks", "SocksUsersFile": "" } }""", "Proxy:SocksUsersFile", "is empty" },
        new object[] { """{ "Proxy": { "Mode": "socks", "SocksUsersFile": "missing" } }""", "Proxy:SocksUsersFile", "cannot read" },
        new object[] { """{ "Proxy": { "Mode": "sock" } }""", "Proxy:Mode", "expected explicit, implicit, socks" },
        new object[] { """{ "Proxy": { "Convert": "5124" } }""", "Proxy:Convert", "address and a port" },
        new object[] { """{ "Proxy": { "Mode": "socks", "Socks": "198.18.0.1:1080", "Convert": "198.18.0.1:1080" } }""", "Proxy:Convert", "listens where Proxy:Socks does" },
        new object[] { """{ "Proxy": { "Mode": "socks", "Socks": "198.18.0.1:1080", "Convert": "0.0.0.0:1080" } }""", "Proxy:Convert", "listens where Proxy:Socks does" },
        new object[] { """{ "Proxy": { "Mode": "explicit", "Socks": "198.18.0.1:443" } }""", "Proxy:Socks", "port 443 is also in Proxy:Ports" },
        new object[] { """{ "Proxy": { "Mode": "implicit", "Ports": [ 80, 5124 ], "Convert": "[2001:db8::1]:5124" } }""", "Proxy:Convert", "port 5124 is also in Proxy:Ports" },
    ];

    [TestCaseSource(nameof(InvalidConfigurations))]
    public void Load_InvalidSocksSetting_RefusedNamingKeyAndReason(string json, string key, string reason)
    {
        var result = Load(json);

        Assert.That(result.IsValid, Is.False);
        Assert.That(result.Errors, Has.Some.StartsWith(key + ": ").And.Contains(reason));
    }

    [Test]
    public void Load_FrontsOnDistinctPortsAndAddresses_Valid()
    {
        // Same port on two specific addresses, and a SOCKS port in Proxy:Ports with no transparent mode: no collision.
        var separate = Load("""{ "Proxy": { "Mode": "socks", "Socks": "198.18.0.1:1080", "Convert": "198.18.0.2:1080" } }""");
        var socksOnly = Load("""{ "Proxy": { "Mode": "socks", "Socks": "0.0.0.0:80" } }""");

        Assert.Multiple(() =>
        {
            Assert.That(separate.IsValid, Is.True, string.Join("; ", separate.Errors));
            Assert.That(socksOnly.IsValid, Is.True, string.Join("; ", socksOnly.Errors));
        });
    }

    [Test]
    public void Verify_PasswordsOfOtherLengthsOrUnknownUser_Refused()
    {
        var users = SocksCredentials.Parse("alice:secret\n", out var error)!;
        Assert.That(users, Is.Not.Null, error);

        Assert.Multiple(() =>
        {
            Assert.That(users.Verify("alice"u8, "secret"u8, out _), Is.True);
            Assert.That(users.Verify("alice"u8, "secre"u8, out _), Is.False);
            Assert.That(users.Verify("alice"u8, "secretsecret"u8, out _), Is.False);
            Assert.That(users.Verify("alice"u8, ""u8, out _), Is.False);
            Assert.That(users.Verify("bob"u8, "secret"u8, out var name), Is.False);
            Assert.That(name, Is.Null);
        });
    }

    [TestCase("alice", "line 1: expected name:password")]
    [TestCase("alice:", "line 1: expected name:password")]
    [TestCase(":secret", "line 1: expected name:password")]
    [TestCase("# nobody\n", "no users in the file")]
    public void ParseUsers_Malformed_NamesTheLine(string text, string error)
    {
        Assert.Multiple(() =>
        {
            Assert.That(SocksCredentials.Parse(text, out var message), Is.Null);
            Assert.That(message, Is.EqualTo(error));
        });
    }

    [Test]
    public void ParseUsers_NameLongerThan255Bytes_Refused()
    {
        Assert.Multiple(() =>
        {
            Assert.That(SocksCredentials.Parse(new string('a', 256) + ":pw", out var message), Is.Null);
            Assert.That(message, Does.Contain("RFC 1929"));
        });
    }

    [Test]
    public void ParseUsers_PasswordWithColon_KeptWhole()
    {
        var users = SocksCredentials.Parse("alice:a:b\r\n", out _)!;
        Assert.Multiple(() =>
        {
            Assert.That(users.Verify("alice"u8, "a:b"u8, out var name), Is.True);
            Assert.That(name, Is.EqualTo("alice"));
            Assert.That(users.Verify("alice"u8, "a"u8, out _), Is.False);
        });
    }
}
