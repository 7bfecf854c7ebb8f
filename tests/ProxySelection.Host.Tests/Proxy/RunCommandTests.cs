namespace ProxySelection.Host.Tests.Proxy;

public sealed class RunCommandTests
{
    [TestCase("80,443", new ushort[] { 80, 443 })]
    [TestCase(" 8080 ", new ushort[] { 8080 })]
    public void TryParsePorts_ValidList_ReturnsPorts(string text, ushort[] expected)
    {
        Assert.That(RunCommand.TryParsePorts(text, out var ports), Is.True);
        Assert.That(ports, Is.EqualTo(expected));
    }

    [TestCase("")]
    [TestCase("0")]
    [TestCase("80,x")]
    [TestCase("65536")]
    [TestCase("-1")]
    public void TryParsePorts_Invalid_ReturnsFalse(string text) =>
        Assert.That(RunCommand.TryParsePorts(text, out _), Is.False);

    [Test]
    public void TryLoadKey_HexFile_DecodesHex()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "00112233445566778899aabbccddeeff\n");
            Assert.That(RunCommand.TryLoadKey(new FileInfo(path), TextWriter.Null, out var key), Is.True);
            Assert.That(key, Is.EqualTo(Convert.FromHexString("00112233445566778899aabbccddeeff")));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void TryLoadKey_TooShort_Refused()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "0011");
            var errors = new StringWriter();
            Assert.That(RunCommand.TryLoadKey(new FileInfo(path), errors, out _), Is.False);
            Assert.That(errors.ToString(), Does.Contain("at least 16 bytes"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void TryLoadKey_MissingFile_Refused() =>
        Assert.That(RunCommand.TryLoadKey(new FileInfo("/nonexistent/psel.key"), TextWriter.Null, out _), Is.False);

    [TestCase("--ports", "0")]
    [TestCase("--role", "sideways")]
    [TestCase("--policy", "random")]
    [TestCase("--proxy-id", "0")]
    [TestCase("--priority", "16")]
    [TestCase("--capacity", "0")]
    public void Run_InvalidOption_UsageErrorBeforeTouchingTheKernel(string option, string value)
    {
        using var stdout = new MemoryStream();
        var stderr = new StringWriter();
        Assert.That(Cli.Run(["run", option, value], stdout, stderr), Is.EqualTo(ExitCodes.Usage), stderr.ToString());
    }
}
