<?xml version="1.0" encoding="UTF-8"?>
<!--
  WMO302 "Toewijzing Wmo-ondersteuning Retour" (BerichtCode 415) answering a WMO301 (414).

  Input: a copy of the WMO301 in which the knooppunt appended <kp:RetourCode> elements as
  the last children of each element a failing rule points at. Output: the WMO302, valid
  against wmo302.xsd, carrying per Header / Client / Relatie / Contact / Beschikking /
  Beperking / BeperkingScore / BeschiktProduct / ToegewezenProduct the codes attached to that
  element (or to a descendant that has no RetourCodes of its own), otherwise $default-code.
  Codes attached to the root or to Clienten are reported on the Header.
-->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:src="http://www.istandaarden.nl/iwmo/2_1/wmo301/schema/2_1"
    xmlns:wmo302="http://www.istandaarden.nl/iwmo/2_1/wmo302/schema/2_1"
    xmlns:iwmo="http://www.istandaarden.nl/iwmo/2_1/basisschema/schema/2_1"
    xmlns:kp="urn:knooppunt:retour"
    exclude-result-prefixes="src kp">

  <xsl:output method="xml" encoding="UTF-8" indent="yes"/>
  <xsl:strip-space elements="*"/>

  <xsl:param name="retour-id" select="''"/>
  <xsl:param name="retour-date" select="''"/>
  <xsl:param name="default-code" select="'0200'"/>

  <!-- Each code belongs to its nearest ancestor that carries RetourCodes in the retour; the
       Header when there is none (document order puts the Header before every other carrier). -->
  <xsl:key name="codes" match="kp:RetourCode"
      use="generate-id((ancestor::*[
                 self::src:Header or self::src:Client or self::src:Relatie or self::src:Contact
                 or self::src:Beschikking or self::src:Beperking[parent::src:Beperkingen]
                 or self::src:BeperkingScore or self::src:BeschiktProduct
                 or self::src:ToegewezenProduct][1]
               | /src:Bericht/src:Header)[last()])"/>
  <xsl:key name="code-values" match="kp:RetourCode"
      use="concat(generate-id((ancestor::*[
                 self::src:Header or self::src:Client or self::src:Relatie or self::src:Contact
                 or self::src:Beschikking or self::src:Beperking[parent::src:Beperkingen]
                 or self::src:BeperkingScore or self::src:BeschiktProduct
                 or self::src:ToegewezenProduct][1]
               | /src:Bericht/src:Header)[last()]), '|', normalize-space(.))"/>

  <xsl:template match="/">
    <xsl:apply-templates select="src:Bericht"/>
  </xsl:template>

  <xsl:template match="src:Bericht">
    <wmo302:Bericht>
      <xsl:apply-templates select="src:Header"/>
      <xsl:apply-templates select="src:Clienten"/>
    </wmo302:Bericht>
  </xsl:template>

  <xsl:template match="src:Header">
    <wmo302:Header>
      <wmo302:BerichtCode>415</wmo302:BerichtCode>
      <xsl:apply-templates select="src:BerichtVersie | src:BerichtSubversie | src:Afzender
                                   | src:Ontvanger | src:BerichtIdentificatie"/>
      <wmo302:IdentificatieRetour><xsl:value-of select="$retour-id"/></wmo302:IdentificatieRetour>
      <wmo302:DagtekeningRetour><xsl:value-of select="$retour-date"/></wmo302:DagtekeningRetour>
      <xsl:call-template name="retourcodes"/>
    </wmo302:Header>
  </xsl:template>

  <!-- Record classes that carry RetourCodes in the WMO302. -->
  <xsl:template match="src:Client | src:Relatie | src:Contact | src:Beschikking
                       | src:Beperkingen/src:Beperking | src:BeperkingScore
                       | src:BeschiktProduct | src:ToegewezenProduct">
    <xsl:element name="wmo302:{local-name()}"
        namespace="http://www.istandaarden.nl/iwmo/2_1/wmo302/schema/2_1">
      <xsl:apply-templates select="*"/>
      <xsl:call-template name="retourcodes"/>
    </xsl:element>
  </xsl:template>

  <!-- Any other element of the message namespace: same local name in the retour namespace.
       node() copies text and elements as '* | text()' would (comments and processing
       instructions have built-in templates that output nothing), without a union to sort;
       the namespace is literal rather than a variable: both make the retour cheaper. -->
  <xsl:template match="src:*">
    <xsl:element name="wmo302:{local-name()}"
        namespace="http://www.istandaarden.nl/iwmo/2_1/wmo302/schema/2_1">
      <xsl:apply-templates select="node()"/>
    </xsl:element>
  </xsl:template>

  <!-- Shared data types (basisschema) keep their namespace. -->
  <xsl:template match="iwmo:*">
    <xsl:element name="iwmo:{local-name()}"
        namespace="http://www.istandaarden.nl/iwmo/2_1/basisschema/schema/2_1">
      <xsl:apply-templates select="node()"/>
    </xsl:element>
  </xsl:template>

  <!-- The node's annotations and anything foreign are never copied. -->
  <xsl:template match="*"/>

  <xsl:template name="retourcodes">
    <xsl:variable name="owner" select="generate-id(.)"/>
    <xsl:variable name="codes" select="key('codes', $owner)"/>
    <wmo302:RetourCodes>
      <xsl:choose>
        <xsl:when test="$codes">
          <xsl:for-each select="$codes">
            <xsl:if test="generate-id(.) = generate-id(key('code-values', concat($owner, '|', normalize-space(.)))[1])">
              <wmo302:RetourCode><xsl:value-of select="normalize-space(.)"/></wmo302:RetourCode>
            </xsl:if>
          </xsl:for-each>
        </xsl:when>
        <xsl:otherwise>
          <wmo302:RetourCode><xsl:value-of select="$default-code"/></wmo302:RetourCode>
        </xsl:otherwise>
      </xsl:choose>
    </wmo302:RetourCodes>
  </xsl:template>

</xsl:stylesheet>
