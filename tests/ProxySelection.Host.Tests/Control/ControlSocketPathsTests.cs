using ProxySelection.Host.Control;
using ProxySelection.Host.Hosting;

namespace ProxySelection.Host.Tests.Control;

public sealed class ControlSocketPathsTests
{
    [Test]
    public void NamespaceId_FromTheNsLink_TheInode() => Assert.That(ControlSocketPaths.NamespaceId("net:[4026531840]"), Is.EqualTo("4026531840"));

    [TestCase(null)]
    [TestCase("mnt:[4026531840]")]
    [TestCase("net:[abc]")]
    public void NamespaceId_Unreadable_Null(string? link) => Assert.That(ControlSocketPaths.NamespaceId(link), Is.Null);

    [Test]
    public void Default_NamesPrefixAndNamespace() =>
        Assert.That(ControlSocketPaths.Default("EDGE", "4026532000"), Is.EqualTo("/run/proxysel/EDGE-net4026532000.sock"));

    [Test]
    public void Default_ThisProcess_CarriesThisNamespacesInode()
    {
        var inode = ControlSocketPaths.NamespaceId(new FileInfo("/proc/self/ns/net").LinkTarget);

        Assert.That(new ProxyHostOptions().ControlSocketPath, Is.EqualTo($"/run/proxysel/PSEL-net{inode}.sock"));
    }
}
