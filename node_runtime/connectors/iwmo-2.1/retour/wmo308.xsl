<?xml version="1.0" encoding="UTF-8"?>
<!--
  WMO308 "Stop Wmo-ondersteuning Retour" (BerichtCode 421) answering a WMO307 (420).

  Input: a copy of the WMO307 in which the knooppunt appended <kp:RetourCode> elements as
  the last children of each element a failing rule points at. Output: the WMO308, valid
  against wmo308.xsd, carrying per Header / Client / StopProduct the codes attached to that
  element (or to a descendant that has no RetourCodes of its own), otherwise $default-code.
  Codes attached to the root or to Clienten are reported on the Header.
-->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:src="http://www.istandaarden.nl/iwmo/2_1/wmo307/schema/2_1"
    xmlns:wmo308="http://www.istandaarden.nl/iwmo/2_1/wmo308/schema/2_1"
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
      use="generate-id((ancestor::*[self::src:Header or self::src:Client or self::src:StopProduct][1]
                        | /src:Bericht/src:Header)[last()])"/>
  <xsl:key name="code-values" match="kp:RetourCode"
      use="concat(generate-id((ancestor::*[self::src:Header or self::src:Client or self::src:StopProduct][1]
                               | /src:Bericht/src:Header)[last()]), '|', normalize-space(.))"/>

  <xsl:template match="/">
    <xsl:apply-templates select="src:Bericht"/>
  </xsl:template>

  <xsl:template match="src:Bericht">
    <wmo308:Bericht>
      <xsl:apply-templates select="src:Header"/>
      <xsl:apply-templates select="src:Clienten"/>
    </wmo308:Bericht>
  </xsl:template>

  <xsl:template match="src:Header">
    <wmo308:Header>
      <wmo308:BerichtCode>421</wmo308:BerichtCode>
      <xsl:apply-templates select="src:BerichtVersie | src:BerichtSubversie | src:Afzender
                                   | src:Ontvanger | src:BerichtIdentificatie"/>
      <wmo308:IdentificatieRetour><xsl:value-of select="$retour-id"/></wmo308:IdentificatieRetour>
      <wmo308:DagtekeningRetour><xsl:value-of select="$retour-date"/></wmo308:DagtekeningRetour>
      <xsl:call-template name="retourcodes"/>
    </wmo308:Header>
  </xsl:template>

  <!-- Record classes that carry RetourCodes in the WMO308. -->
  <xsl:template match="src:Client | src:StopProduct">
    <xsl:element name="wmo308:{local-name()}"
        namespace="http://www.istandaarden.nl/iwmo/2_1/wmo308/schema/2_1">
      <xsl:apply-templates select="*"/>
      <xsl:call-template name="retourcodes"/>
    </xsl:element>
  </xsl:template>

  <!-- Any other element of the message namespace: same local name in the retour namespace.
       node() copies text and elements as '* | text()' would (comments and processing
       instructions have built-in templates that output nothing), without a union to sort;
       the namespace is literal rather than a variable: both make the retour cheaper. -->
  <xsl:template match="src:*">
    <xsl:element name="wmo308:{local-name()}"
        namespace="http://www.istandaarden.nl/iwmo/2_1/wmo308/schema/2_1">
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
    <wmo308:RetourCodes>
      <xsl:choose>
        <xsl:when test="$codes">
          <xsl:for-each select="$codes">
            <xsl:if test="generate-id(.) = generate-id(key('code-values', concat($owner, '|', normalize-space(.)))[1])">
              <wmo308:RetourCode><xsl:value-of select="normalize-space(.)"/></wmo308:RetourCode>
            </xsl:if>
          </xsl:for-each>
        </xsl:when>
        <xsl:otherwise>
          <wmo308:RetourCode><xsl:value-of select="$default-code"/></wmo308:RetourCode>
        </xsl:otherwise>
      </xsl:choose>
    </wmo308:RetourCodes>
  </xsl:template>

  <!-- BEGIN generated literal templates (tests/connector/retour_templates.py; do not edit):
       the same copies as the generic src:* and iwmo:* templates, as literal result
       elements, which libxslt instantiates without evaluating a name per element. -->
  <xsl:template match="src:Aanbieder"><wmo308:Aanbieder><xsl:apply-templates select="node()"/></wmo308:Aanbieder></xsl:template>
  <xsl:template match="src:Afzender"><wmo308:Afzender><xsl:apply-templates select="node()"/></wmo308:Afzender></xsl:template>
  <xsl:template match="src:Begindatum"><wmo308:Begindatum><xsl:apply-templates select="node()"/></wmo308:Begindatum></xsl:template>
  <xsl:template match="src:BerichtCode"><wmo308:BerichtCode><xsl:apply-templates select="node()"/></wmo308:BerichtCode></xsl:template>
  <xsl:template match="src:BerichtIdentificatie"><wmo308:BerichtIdentificatie><xsl:apply-templates select="node()"/></wmo308:BerichtIdentificatie></xsl:template>
  <xsl:template match="src:BerichtSubversie"><wmo308:BerichtSubversie><xsl:apply-templates select="node()"/></wmo308:BerichtSubversie></xsl:template>
  <xsl:template match="src:BerichtVersie"><wmo308:BerichtVersie><xsl:apply-templates select="node()"/></wmo308:BerichtVersie></xsl:template>
  <xsl:template match="src:BeschikkingNummer"><wmo308:BeschikkingNummer><xsl:apply-templates select="node()"/></wmo308:BeschikkingNummer></xsl:template>
  <xsl:template match="src:Bsn"><wmo308:Bsn><xsl:apply-templates select="node()"/></wmo308:Bsn></xsl:template>
  <xsl:template match="src:Clienten"><wmo308:Clienten><xsl:apply-templates select="node()"/></wmo308:Clienten></xsl:template>
  <xsl:template match="src:Einddatum"><wmo308:Einddatum><xsl:apply-templates select="node()"/></wmo308:Einddatum></xsl:template>
  <xsl:template match="src:Geboortedatum"><wmo308:Geboortedatum><xsl:apply-templates select="node()"/></wmo308:Geboortedatum></xsl:template>
  <xsl:template match="src:Geslacht"><wmo308:Geslacht><xsl:apply-templates select="node()"/></wmo308:Geslacht></xsl:template>
  <xsl:template match="src:Naam"><wmo308:Naam><xsl:apply-templates select="node()"/></wmo308:Naam></xsl:template>
  <xsl:template match="src:Ontvanger"><wmo308:Ontvanger><xsl:apply-templates select="node()"/></wmo308:Ontvanger></xsl:template>
  <xsl:template match="src:Product"><wmo308:Product><xsl:apply-templates select="node()"/></wmo308:Product></xsl:template>
  <xsl:template match="src:RedenBeeindiging"><wmo308:RedenBeeindiging><xsl:apply-templates select="node()"/></wmo308:RedenBeeindiging></xsl:template>
  <xsl:template match="src:StatusAanlevering"><wmo308:StatusAanlevering><xsl:apply-templates select="node()"/></wmo308:StatusAanlevering></xsl:template>
  <xsl:template match="src:StopProducten"><wmo308:StopProducten><xsl:apply-templates select="node()"/></wmo308:StopProducten></xsl:template>
  <xsl:template match="src:ToewijzingIngangsdatum"><wmo308:ToewijzingIngangsdatum><xsl:apply-templates select="node()"/></wmo308:ToewijzingIngangsdatum></xsl:template>
  <xsl:template match="src:ToewijzingNummer"><wmo308:ToewijzingNummer><xsl:apply-templates select="node()"/></wmo308:ToewijzingNummer></xsl:template>
  <xsl:template match="iwmo:AanduidingWoonadres"><iwmo:AanduidingWoonadres><xsl:apply-templates select="node()"/></iwmo:AanduidingWoonadres></xsl:template>
  <xsl:template match="iwmo:Begindatum"><iwmo:Begindatum><xsl:apply-templates select="node()"/></iwmo:Begindatum></xsl:template>
  <xsl:template match="iwmo:Categorie"><iwmo:Categorie><xsl:apply-templates select="node()"/></iwmo:Categorie></xsl:template>
  <xsl:template match="iwmo:Code"><iwmo:Code><xsl:apply-templates select="node()"/></iwmo:Code></xsl:template>
  <xsl:template match="iwmo:Dagtekening"><iwmo:Dagtekening><xsl:apply-templates select="node()"/></iwmo:Dagtekening></xsl:template>
  <xsl:template match="iwmo:Datum"><iwmo:Datum><xsl:apply-templates select="node()"/></iwmo:Datum></xsl:template>
  <xsl:template match="iwmo:DatumGebruik"><iwmo:DatumGebruik><xsl:apply-templates select="node()"/></iwmo:DatumGebruik></xsl:template>
  <xsl:template match="iwmo:Eenheid"><iwmo:Eenheid><xsl:apply-templates select="node()"/></iwmo:Eenheid></xsl:template>
  <xsl:template match="iwmo:Einddatum"><iwmo:Einddatum><xsl:apply-templates select="node()"/></iwmo:Einddatum></xsl:template>
  <xsl:template match="iwmo:Frequentie"><iwmo:Frequentie><xsl:apply-templates select="node()"/></iwmo:Frequentie></xsl:template>
  <xsl:template match="iwmo:Geslachtsnaam"><iwmo:Geslachtsnaam><xsl:apply-templates select="node()"/></iwmo:Geslachtsnaam></xsl:template>
  <xsl:template match="iwmo:Grondslag01"><iwmo:Grondslag01><xsl:apply-templates select="node()"/></iwmo:Grondslag01></xsl:template>
  <xsl:template match="iwmo:Grondslag02"><iwmo:Grondslag02><xsl:apply-templates select="node()"/></iwmo:Grondslag02></xsl:template>
  <xsl:template match="iwmo:Huis"><iwmo:Huis><xsl:apply-templates select="node()"/></iwmo:Huis></xsl:template>
  <xsl:template match="iwmo:Huisletter"><iwmo:Huisletter><xsl:apply-templates select="node()"/></iwmo:Huisletter></xsl:template>
  <xsl:template match="iwmo:Huisnummer"><iwmo:Huisnummer><xsl:apply-templates select="node()"/></iwmo:Huisnummer></xsl:template>
  <xsl:template match="iwmo:HuisnummerToevoeging"><iwmo:HuisnummerToevoeging><xsl:apply-templates select="node()"/></iwmo:HuisnummerToevoeging></xsl:template>
  <xsl:template match="iwmo:Identificatie"><iwmo:Identificatie><xsl:apply-templates select="node()"/></iwmo:Identificatie></xsl:template>
  <xsl:template match="iwmo:LandCode"><iwmo:LandCode><xsl:apply-templates select="node()"/></iwmo:LandCode></xsl:template>
  <xsl:template match="iwmo:Landnummer"><iwmo:Landnummer><xsl:apply-templates select="node()"/></iwmo:Landnummer></xsl:template>
  <xsl:template match="iwmo:Naam"><iwmo:Naam><xsl:apply-templates select="node()"/></iwmo:Naam></xsl:template>
  <xsl:template match="iwmo:NaamGebruik"><iwmo:NaamGebruik><xsl:apply-templates select="node()"/></iwmo:NaamGebruik></xsl:template>
  <xsl:template match="iwmo:Partnernaam"><iwmo:Partnernaam><xsl:apply-templates select="node()"/></iwmo:Partnernaam></xsl:template>
  <xsl:template match="iwmo:Plaatsnaam"><iwmo:Plaatsnaam><xsl:apply-templates select="node()"/></iwmo:Plaatsnaam></xsl:template>
  <xsl:template match="iwmo:Postcode"><iwmo:Postcode><xsl:apply-templates select="node()"/></iwmo:Postcode></xsl:template>
  <xsl:template match="iwmo:Straatnaam"><iwmo:Straatnaam><xsl:apply-templates select="node()"/></iwmo:Straatnaam></xsl:template>
  <xsl:template match="iwmo:Taal"><iwmo:Taal><xsl:apply-templates select="node()"/></iwmo:Taal></xsl:template>
  <xsl:template match="iwmo:Telefoon01"><iwmo:Telefoon01><xsl:apply-templates select="node()"/></iwmo:Telefoon01></xsl:template>
  <xsl:template match="iwmo:Telefoon02"><iwmo:Telefoon02><xsl:apply-templates select="node()"/></iwmo:Telefoon02></xsl:template>
  <xsl:template match="iwmo:Telefoonnummer"><iwmo:Telefoonnummer><xsl:apply-templates select="node()"/></iwmo:Telefoonnummer></xsl:template>
  <xsl:template match="iwmo:Type"><iwmo:Type><xsl:apply-templates select="node()"/></iwmo:Type></xsl:template>
  <xsl:template match="iwmo:Volume"><iwmo:Volume><xsl:apply-templates select="node()"/></iwmo:Volume></xsl:template>
  <xsl:template match="iwmo:Voorletters"><iwmo:Voorletters><xsl:apply-templates select="node()"/></iwmo:Voorletters></xsl:template>
  <xsl:template match="iwmo:Voornamen"><iwmo:Voornamen><xsl:apply-templates select="node()"/></iwmo:Voornamen></xsl:template>
  <xsl:template match="iwmo:Voorvoegsel"><iwmo:Voorvoegsel><xsl:apply-templates select="node()"/></iwmo:Voorvoegsel></xsl:template>
  <xsl:template match="iwmo:Vorm"><iwmo:Vorm><xsl:apply-templates select="node()"/></iwmo:Vorm></xsl:template>
  <!-- END generated literal templates -->

</xsl:stylesheet>
